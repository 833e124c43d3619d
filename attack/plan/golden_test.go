package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"text/template"
)

// TestPlansAreUnchanged pins the fingerprint and the plan.jsonl bytes of
// a few plans, the largest 250,000 charges: a seed must keep giving the
// same plan across paytest versions, or two runs of the same seed would
// not send the same requests. It also pins one shard's fingerprint.
func TestPlansAreUnchanged(t *testing.T) {
	def := DefaultConfig()
	def.Seed = 42
	large := DefaultConfig()
	large.Ops, large.Seed = 250_000, 1
	cases := []struct {
		name               string
		cfg                Config
		ops                int
		fingerprint, jsonl string
		shard1of3          string
	}{
		{"default", def, 1020,
			"d5f632aa08bf3d0e40095891f83b10fbbfce1d476b880205cae945bfe3a3900d",
			"11dfe0e8011f77da65a38dd8601f5e0c5d9e9bb4e93792f2f9f1994748072686",
			"8187d20a07c21e55285f55b800972a0798f2392f5666fdd547c2fa929245ebc7"},
		{"merchants and catalog", Config{Ops: 20000, DuplicateRate: 0.2, RaceRate: 0.05, ReuseRate: 0.05, Seed: 7, Catalog: 5000,
			Merchants: []Merchant{{"a", "ka"}, {"b", "kb"}, {"c", "kc"}}}, 21000,
			"29e42fb026ec387aa0ba39d7c111b37bb92bf71bfeed1a261bd4c8ebc626d99b",
			"3502787903eed2382cf22cbacc53c07c1cbd352fe2bfcc6547b74b35ec5b2147",
			"5cca4fe61bb5dfdba2505613dbf091dd110c4922a24ae7c6f295c58ff214c8e0"},
		{"body template", Config{Ops: 500, Seed: 5, ReuseRate: 0.1, RaceRate: 0.3, BodyTemplate: template.Must(template.New("b").Parse(
			`{"op":{{.Op}},"cents":{{.Amount}},"ref":"{{.Key}}","m":"{{.Merchant}}","c":"{{.Currency}}","cu":"{{.Customer}}","s":"{{.SKU}}","q":{{.Quantity}}}`))}, 550,
			"c8d5655a3a5acef12111e749f1f9878b712f773ba206fa57e42511f987f2b96f",
			"6c7e32ab1b130a6f47023c4614804c0f73f3552c9d64a1faa5e5efc856b29358",
			"ec46e042a97d00fb64278744bead6b6f401ef2ba810fe9c59bb1b98edf300afb"},
		{"250k", large, 255_000,
			"57505a0a30a800370744eefc5af4d720724c71d30f5ab2a106764cc4d8a8f60e",
			"fa615707c5eb577a92f7ba368500b95c41f6d67c705bd1dad5d3f390ab432720",
			"e4361a33bfd56c68eb461281f15b4a02a5590083c51fbdd2e957d75a0a7c1f83"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, tc.cfg)
			if p.Len() != tc.ops {
				t.Fatalf("%d ops, want %d", p.Len(), tc.ops)
			}
			if fp := p.Fingerprint(); fp != tc.fingerprint {
				t.Errorf("fingerprint %s, want %s", fp, tc.fingerprint)
			}
			path := filepath.Join(t.TempDir(), "plan.jsonl")
			if err := p.Write(path); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != tc.jsonl {
				t.Errorf("plan.jsonl's SHA-256 %x, want %s", sum, tc.jsonl)
			}
			// Save writes the same file and finds the same fingerprint in
			// its one pass.
			saved := filepath.Join(t.TempDir(), "saved.jsonl")
			fp, err := p.Save(t.Context(), saved)
			if err != nil {
				t.Fatal(err)
			}
			if sb, err := os.ReadFile(saved); err != nil || string(sb) != string(b) || fp != tc.fingerprint {
				t.Errorf("Save: fingerprint %s, %d bytes (%v); Write and Fingerprint: %s, %d bytes", fp, len(sb), err, tc.fingerprint, len(b))
			}
			if fp := p.Shard(1, 3).Fingerprint(); fp != tc.shard1of3 {
				t.Errorf("Shard(1, 3)'s fingerprint %s, want %s", fp, tc.shard1of3)
			}
		})
	}
}
