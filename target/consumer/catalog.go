package consumer

import "strconv"

// CatalogSKU names the i-th sku (from 1) of the inventory the consumer
// seeds: its catalog is CatalogSKU(1) .. CatalogSKU(Catalog), "sku-1" ..
// "sku-N", as the seed statement in setup writes them.
func CatalogSKU(i int) string { return "sku-" + strconv.Itoa(i) }

// InCatalog reports whether sku is in a catalog of n skus as the consumer
// seeds it: the skus it can apply. An event for any other sku is
// dead-lettered, so the charge service refuses such a charge up front.
func InCatalog(sku string, n int) bool {
	if len(sku) < len("sku-1") || sku[:4] != "sku-" {
		return false
	}
	i, err := strconv.Atoi(sku[4:])
	// The round trip refuses every other spelling of the number: "sku-01",
	// "sku-+1".
	return err == nil && i >= 1 && i <= n && CatalogSKU(i) == sku
}
