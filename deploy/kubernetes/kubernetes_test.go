package kubernetes

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// rendered reads this directory and renders it as kubectl apply -k would.
func rendered(t *testing.T) *manifests {
	t.Helper()
	raw, k, files, err := readDir(".")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkResources(k, files); err != nil {
		t.Fatal(err)
	}
	m, err := render(k, raw)
	if err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestManifestsAreWiredTogether(t *testing.T) {
	m := rendered(t)
	if len(m.Jobs) != 2 || len(m.PVCs) != 1 || len(m.ConfigMaps) != 1 || len(m.Namespaces) != 1 {
		t.Fatalf("%d Jobs, %d PVCs, %d ConfigMaps, %d Namespaces: want 2, 1, 1, 1", len(m.Jobs), len(m.PVCs), len(m.ConfigMaps), len(m.Namespaces))
	}
	if err := checkWiring(m); err != nil {
		t.Fatal(err)
	}
	if got := m.PVCs[0].Spec.AccessModes; len(got) != 1 || got[0] != corev1.ReadWriteMany {
		t.Errorf("PVC access modes %v: the shard pods write it at once from any node, want ReadWriteMany", got)
	}
}

// TestWiringCheckFires breaks the rendered manifests one way at a time;
// each must be caught, naming what is wrong.
func TestWiringCheckFires(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	shards := func(m *manifests) *batchv1.Job { return m.job("paytest-shards") }
	verify := func(m *manifests) *batchv1.Job { return m.job("paytest-verify") }
	ctr := func(j *batchv1.Job) *corev1.Container { return &j.Spec.Template.Spec.Containers[0] }
	setArg := func(j *batchv1.Job, flag, val string) {
		c := ctr(j)
		for i, a := range c.Args {
			if a == flag {
				c.Args[i+1] = val
				return
			}
		}
		t.Fatalf("job %s has no %s", j.Name, flag)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*manifests)
		want   string
	}{
		{"parallelism 3", func(m *manifests) { shards(m).Spec.Parallelism = i32(3) }, "parallelism 3, but --shard says N=4"},
		{"completions 3", func(m *manifests) { shards(m).Spec.Completions = i32(3) }, "completions 3, but --shard says N=4"},
		{"N in the ConfigMap only", func(m *manifests) { m.configMap("paytest-run").Data["SHARDS"] = "5" }, "completions 4, but --shard says N=5"},
		{"not indexed", func(m *manifests) { shards(m).Spec.CompletionMode = new(batchv1.NonIndexedCompletion) }, "completionMode is not Indexed"},
		{"retried shard", func(m *manifests) { shards(m).Spec.BackoffLimitPerIndex = i32(1) }, "would be retried"},
		{"default backoff", func(m *manifests) { shards(m).Spec.BackoffLimitPerIndex = nil }, "would be retried"},
		{"fixed shard index", func(m *manifests) { setArg(shards(m), "--shard", "0/$(SHARDS)") }, "K must be $(JOB_COMPLETION_INDEX)"},
		{"index from elsewhere", func(m *manifests) {
			ctr(shards(m)).Env[0] = corev1.EnvVar{Name: "JOB_COMPLETION_INDEX", Value: "0"}
		}, "JOB_COMPLETION_INDEX is not the downward API's"},
		{"seed per shard", func(m *manifests) { setArg(shards(m), "--seed", "1$(JOB_COMPLETION_INDEX)") }, "differs between shards"},
		{"random seed", func(m *manifests) { m.configMap("paytest-run").Data["SEED"] = "0" }, "want one fixed non-zero number"},
		{"unknown variable", func(m *manifests) { setArg(shards(m), "--seed", "$(SEEDS)") }, "$(SEEDS)"},
		{"one directory for all", func(m *manifests) { setArg(shards(m), "--out", "/runs/$(RUN_ID)/shard") }, "both write"},
		{"glob misses", func(m *manifests) { setArg(verify(m), "--run", "/runs/$(RUN_ID)/shards-*") }, "it would never see that shard"},
		{"out off the volume", func(m *manifests) { setArg(shards(m), "--out", "/tmp/$(RUN_ID)/shard-$(JOB_COMPLETION_INDEX)") }, "not on a PersistentVolumeClaim"},
		{"another claim", func(m *manifests) {
			verify(m).Spec.Template.Spec.Volumes[0].PersistentVolumeClaim.ClaimName = "other"
		}, "on claim other"},
		{"verify mounted elsewhere", func(m *manifests) { ctr(verify(m)).VolumeMounts[0].MountPath = "/data" }, "not on a PersistentVolumeClaim"},
		{"verify not suspended", func(m *manifests) { verify(m).Spec.Suspend = nil }, "not created suspended"},
		{"two verdicts", func(m *manifests) { verify(m).Spec.Completions = i32(2) }, "completions and parallelism must be 1"},
		{"junit off the volume", func(m *manifests) { setArg(verify(m), "--junit", "/tmp/junit.xml") }, "/tmp/junit.xml is not on a PersistentVolumeClaim"},
		{"junit among the shards", func(m *manifests) { setArg(verify(m), "--junit", "/runs/$(RUN_ID)/shard-junit.xml") }, "would be read as a shard"},
		{"restart on failure", func(m *manifests) { shards(m).Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure }, "want Never"},
		{"two images", func(m *manifests) { ctr(verify(m)).Image = "ghcr.io/paytest/paytest:v0.1.0" }, "want one image everywhere"},
		{"no memory limit", func(m *manifests) { delete(ctr(shards(m)).Resources.Limits, corev1.ResourceMemory) }, "memory limit"},
		{"database URL in args", func(m *manifests) {
			c := ctr(shards(m))
			c.Args = append(c.Args, "--database-url", "postgres://app:hunter2@db/shop")
		}, "--database-url in the arguments"},
		{"database URL as a literal", func(m *manifests) {
			ctr(shards(m)).Env[1] = corev1.EnvVar{Name: "PAYTEST_DATABASE_URL", Value: "postgres://app@db/shop"}
		}, "PAYTEST_DATABASE_URL is not from a secretKeyRef"},
		{"password in the ConfigMap", func(m *manifests) {
			m.configMap("paytest-run").Data["TARGET_URL"] = "https://u:hunter2@pay.example/charge"
		}, "holds a password"},
		{"Secret value in args", func(m *manifests) {
			m.Secrets = append(m.Secrets, corev1.Secret{StringData: map[string]string{"token": "sk_live_x"}})
			m.Secrets[0].Namespace = "paytest"
			c := ctr(shards(m))
			c.Args = append(c.Args, "--header", "Authorization: Bearer sk_live_x")
		}, "holds a Secret's value"},
		{"evidence differs", func(m *manifests) { ctr(verify(m)).Env = ctr(verify(m)).Env[:0] }, "env or envFrom differ"},
		{"namespace", func(m *manifests) { m.PVCs[0].Namespace = "default" }, `in namespace "default"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := rendered(t)
			tc.mutate(m)
			err := checkWiring(m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkWiring = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestDecodingIsStrict(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {completion: 4}\n", `unknown field "completion"`},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {SEED: '1', SEED: '2'}\n", `key "SEED" already set`},
		{"unknown kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n", `kind "Deployment"`},
		{"wrong apiVersion", "apiVersion: batch/v1beta1\nkind: Job\nmetadata: {name: j}\n", `want "batch/v1"`},
		{"wrong type", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {completions: four}\n", "completions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m manifests
			err := m.addAll("doc.yaml", []byte("# a comment-only document\n---\n"+tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("addAll = %v, want an error with %q", err, tc.want)
			}
		})
	}
	var k kustomization
	if err := decodeStrict([]byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\npatches: []\n"), &k); err == nil || !strings.Contains(err.Error(), `unknown field "patches"`) {
		t.Fatalf("a kustomization field render does not know: %v, want refused", err)
	}
	if err := checkResources(kustomization{Resources: []string{"a.yaml"}}, []string{"a.yaml", "b.yaml"}); err == nil || !strings.Contains(err.Error(), "b.yaml is not among") {
		t.Fatalf("checkResources with a manifest left out = %v", err)
	}
}

func TestSetImage(t *testing.T) {
	images := []kImage{{Name: "ghcr.io/paytest/paytest", NewTag: "v1.2.3"}, {Name: "localhost:5000/p", NewName: "reg.example/p", Digest: "sha256:ab"}}
	for in, want := range map[string]string{
		"ghcr.io/paytest/paytest:latest": "ghcr.io/paytest/paytest:v1.2.3",
		"ghcr.io/paytest/paytest":        "ghcr.io/paytest/paytest:v1.2.3",
		"localhost:5000/p:1":             "reg.example/p@sha256:ab",
		"busybox:1.37":                   "busybox:1.37",
	} {
		if got := setImage(in, images); got != want {
			t.Errorf("setImage(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestKustomizeAgrees builds the directory with kubectl's own kustomize,
// when kubectl is installed, and checks it renders what render does, so
// the wiring checked above is what a cluster would be given.
func TestKustomizeAgrees(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not installed: the kustomize build is not cross-checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	out, err := exec.CommandContext(ctx, kubectl, "kustomize", ".").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	var built manifests
	if err := built.addAll("kubectl kustomize", out); err != nil {
		t.Fatal(err)
	}
	if err := checkWiring(&built); err != nil {
		t.Fatal(err)
	}
	unhash(&built, "paytest-run")
	want := rendered(t)
	if !equality.Semantic.DeepEqual(&built, want) {
		t.Fatalf("kubectl kustomize builds\n%+v\nrender gives\n%+v", built, *want)
	}
}

// unhash renames the generated ConfigMap name-<hash> back to name, and the
// Jobs' references to it.
func unhash(m *manifests, name string) {
	hashed := ""
	for i := range m.ConfigMaps {
		if strings.HasPrefix(m.ConfigMaps[i].Name, name+"-") {
			hashed, m.ConfigMaps[i].Name = m.ConfigMaps[i].Name, name
		}
	}
	for i := range m.Jobs {
		for _, c := range containers(&m.Jobs[i].Spec.Template.Spec) {
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == hashed {
					ef.ConfigMapRef.Name = name
				}
			}
		}
	}
}
