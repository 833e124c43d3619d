// Package kubernetes holds the manifests that run a sharded paytest attack
// on a Kubernetes cluster: an Indexed Job whose pod K runs
// `paytest attack --shard K/N` into its own run directory on a shared
// volume, and a verify Job that merges those directories into one verdict,
// tied together by kustomization.yaml.
//
// The package has no code of its own. Its test decodes every manifest
// strictly into the Kubernetes API types and checks that the pieces agree:
// the number of pods and the N of --shard, one seed for every shard, the
// shards' run directories and the verify Job's --run glob, one image, and
// secrets kept out of every process's arguments.
package kubernetes
