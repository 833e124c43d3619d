package kubernetes

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// indexAnnotation is the downward API path of an Indexed Job pod's index.
const indexAnnotation = "metadata.annotations['batch.kubernetes.io/job-completion-index']"

// secretish names environment variables that must come from a Secret.
var secretish = regexp.MustCompile(`(?i)DATABASE_URL|PASSWORD|TOKEN|SECRET|API_KEY`)

// varRef is the kubelet's $(VAR) reference in command and args.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// pod is one Job's paytest container with the environment it sees.
type pod struct {
	job  *batchv1.Job
	spec *corev1.PodSpec
	c    *corev1.Container
	vars map[string]string // from envFrom ConfigMaps and literal env values
}

// newPod takes the Job's single container and resolves its environment.
func newPod(m *manifests, j *batchv1.Job) (*pod, error) {
	spec := &j.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return nil, fmt.Errorf("job %s: %d containers, want the one paytest container", j.Name, len(spec.Containers))
	}
	p := &pod{job: j, spec: spec, c: &spec.Containers[0], vars: map[string]string{}}
	for _, ef := range p.c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		cm := m.configMap(ef.ConfigMapRef.Name)
		if cm == nil {
			return nil, fmt.Errorf("job %s: envFrom names ConfigMap %s, which no manifest declares", j.Name, ef.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			p.vars[ef.Prefix+k] = v
		}
	}
	for _, e := range p.c.Env {
		if e.ValueFrom == nil {
			p.vars[e.Name] = e.Value
		}
	}
	return p, nil
}

// flag returns every value of --name in the container's args, in either
// --name VALUE or --name=VALUE form.
func (p *pod) flag(name string) []string {
	var out []string
	args := p.c.Args
	for i := 0; i < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i], "--"+name+"="); ok {
			out = append(out, v)
		} else if args[i] == "--"+name && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
	}
	return out
}

// one returns the single value of --name, or an error.
func (p *pod) one(name string) (string, error) {
	v := p.flag(name)
	if len(v) != 1 {
		return "", fmt.Errorf("job %s: %d --%s flags, want one", p.job.Name, len(v), name)
	}
	return v[0], nil
}

// expand resolves $(VAR) as the kubelet would in the pod with the given
// completion index (-1: none), and refuses a reference it cannot resolve,
// which the kubelet would pass on verbatim.
func (p *pod) expand(s string, index int) (string, error) {
	var err error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		if name == "JOB_COMPLETION_INDEX" && index >= 0 {
			return strconv.Itoa(index)
		}
		v, ok := p.vars[name]
		if !ok {
			err = errors.Join(err, fmt.Errorf("job %s: %s in %q is not in the container's environment", p.job.Name, ref, s))
		}
		return v
	})
	return out, err
}

// onClaim says which PersistentVolumeClaim, and where on it, a path the
// container writes lies.
func (p *pod) onClaim(file string) (claim, rel string, err error) {
	best := ""
	for _, vm := range p.c.VolumeMounts {
		mp := path.Clean(vm.MountPath)
		if (file == mp || strings.HasPrefix(file, mp+"/")) && len(mp) > len(best) {
			best, claim = mp, ""
			for _, v := range p.spec.Volumes {
				if v.Name == vm.Name && v.PersistentVolumeClaim != nil {
					claim = v.PersistentVolumeClaim.ClaimName
				}
			}
		}
	}
	if claim == "" {
		return "", "", fmt.Errorf("job %s: %s is not on a PersistentVolumeClaim: it would vanish with the pod", p.job.Name, file)
	}
	return claim, strings.TrimPrefix(file, best), nil
}

// jobs finds the shards Job (the one running attack) and the verify Job.
func jobs(m *manifests) (shards, verify *pod, err error) {
	for i := range m.Jobs {
		p, err := newPod(m, &m.Jobs[i])
		if err != nil {
			return nil, nil, err
		}
		switch {
		case len(p.c.Args) > 0 && p.c.Args[0] == "attack" && shards == nil:
			shards = p
		case len(p.c.Args) > 0 && p.c.Args[0] == "verify" && verify == nil:
			verify = p
		default:
			return nil, nil, fmt.Errorf("job %s: args %q: want one Job running attack and one running verify", p.job.Name, p.c.Args)
		}
	}
	if shards == nil || verify == nil {
		return nil, nil, errors.New("want one Job running attack and one running verify")
	}
	return shards, verify, nil
}

// checkWiring says everything in m that would make a sharded run wrong.
func checkWiring(m *manifests) error {
	shards, verify, err := jobs(m)
	if err != nil {
		return err
	}
	n, err := checkShards(shards)
	if err != nil {
		return err
	}
	return errors.Join(
		checkShardIndex(shards),
		checkSeed(shards, n),
		checkRunDirs(shards, verify, n),
		checkVerifyJob(verify),
		checkPods(m, shards, verify),
		checkSecrets(m),
		checkNamespaces(m),
	)
}

// checkShards checks the Job runs N indexed pods, each once, and returns
// the N of its --shard K/N.
func checkShards(p *pod) (int, error) {
	spec := p.job.Spec
	var errs []error
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		errs = append(errs, fmt.Errorf("job %s: completionMode is not Indexed: the pods would get no completion index", p.job.Name))
	}
	shard, err := p.one("shard")
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	shard, err = p.expand(shard, 0)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	_, ns, _ := strings.Cut(shard, "/")
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		return 0, errors.Join(append(errs, fmt.Errorf("job %s: --shard %q: want K/N with N a positive number", p.job.Name, shard))...)
	}
	if spec.Completions == nil || int(*spec.Completions) != n {
		errs = append(errs, fmt.Errorf("job %s: completions %v, but --shard says N=%d: a part of the plan would go unsent or a pod would be refused", p.job.Name, deref(spec.Completions), n))
	}
	if spec.Parallelism == nil || int(*spec.Parallelism) != n {
		errs = append(errs, fmt.Errorf("job %s: parallelism %v, but --shard says N=%d: the shards would not run at the same time", p.job.Name, deref(spec.Parallelism), n))
	}
	if !(isZero(spec.BackoffLimitPerIndex) || spec.BackoffLimitPerIndex == nil && isZero(spec.BackoffLimit)) {
		errs = append(errs, fmt.Errorf("job %s: backoffLimitPerIndex %v, backoffLimit %v: a failed shard would be retried and send its operations again", p.job.Name, deref(spec.BackoffLimitPerIndex), deref(spec.BackoffLimit)))
	}
	return n, errors.Join(errs...)
}

func deref(p *int32) any {
	if p == nil {
		return "unset"
	}
	return *p
}

func isZero(p *int32) bool { return p != nil && *p == 0 }

// checkShardIndex checks K in --shard K/N is the pod's completion index.
func checkShardIndex(p *pod) error {
	var errs []error
	shard, _ := p.one("shard")
	if k, _, _ := strings.Cut(shard, "/"); k != "$(JOB_COMPLETION_INDEX)" {
		errs = append(errs, fmt.Errorf("job %s: --shard %q: K must be $(JOB_COMPLETION_INDEX), or every pod runs the same part", p.job.Name, shard))
	}
	// Kubernetes sets JOB_COMPLETION_INDEX itself in an Indexed Job; one
	// declared here must be the same thing.
	for _, e := range p.c.Env {
		if e.Name != "JOB_COMPLETION_INDEX" {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != indexAnnotation {
			errs = append(errs, fmt.Errorf("job %s: JOB_COMPLETION_INDEX is not the downward API's %s", p.job.Name, indexAnnotation))
		}
	}
	return errors.Join(errs...)
}

// checkSeed checks every shard gets one fixed, non-zero seed: they split
// one plan only if they all draw the same one (0 draws a random seed per
// process).
func checkSeed(p *pod, n int) error {
	raw, err := p.one("seed")
	if err != nil {
		return err
	}
	first := ""
	for k := range n {
		s, err := p.expand(raw, k)
		if err != nil {
			return err
		}
		if v, err := strconv.ParseInt(s, 10, 64); err != nil || v == 0 {
			return fmt.Errorf("job %s: --seed %q is %q in shard %d: want one fixed non-zero number", p.job.Name, raw, s, k)
		}
		if k == 0 {
			first = s
		} else if s != first {
			return fmt.Errorf("job %s: --seed %q differs between shards (%s in 0, %s in %d): each would split a different plan", p.job.Name, raw, first, s, k)
		}
	}
	return nil
}

// checkRunDirs checks every shard writes its own directory under one run
// directory on the volume the verify Job reads, and that the verify Job's
// --run glob matches exactly those directories' names.
func checkRunDirs(shards, verify *pod, n int) error {
	rawOut, err := shards.one("out")
	if err != nil {
		return err
	}
	runs := verify.flag("run")
	if len(runs) != 1 {
		return fmt.Errorf("job %s: %d --run flags, want one glob over the shards", verify.job.Name, len(runs))
	}
	glob, err := verify.expand(runs[0], -1)
	if err != nil {
		return err
	}
	gClaim, gRel, err := verify.onClaim(glob)
	if err != nil {
		return err
	}
	var errs []error
	seen := map[string]int{}
	for k := range n {
		out, err := shards.expand(rawOut, k)
		if err != nil {
			return err
		}
		claim, rel, err := shards.onClaim(out)
		if err != nil {
			return err
		}
		if prev, ok := seen[rel]; ok {
			errs = append(errs, fmt.Errorf("job %s: shards %d and %d both write %s", shards.job.Name, prev, k, out))
		}
		seen[rel] = k
		if !matches(gRel, rel) || claim != gClaim {
			errs = append(errs, fmt.Errorf("shard %d writes %s on claim %s; job %s reads --run %s on claim %s: it would never see that shard", k, rel, claim, verify.job.Name, gRel, gClaim))
		}
		if path.Dir(rel) != path.Dir(gRel) {
			errs = append(errs, fmt.Errorf("shard %d writes under %s, job %s reads under %s: not one run directory", k, path.Dir(rel), verify.job.Name, path.Dir(gRel)))
		}
	}
	return errors.Join(errs...)
}

// checkVerifyJob checks the verify Job waits to be resumed, runs once and
// leaves its JUnit file on the volume.
func checkVerifyJob(p *pod) error {
	var errs []error
	if p.job.Spec.Suspend == nil || !*p.job.Spec.Suspend {
		errs = append(errs, fmt.Errorf("job %s is not created suspended: it would judge the run before the shards finish", p.job.Name))
	}
	if p.job.Spec.Completions != nil && *p.job.Spec.Completions != 1 || p.job.Spec.Parallelism != nil && *p.job.Spec.Parallelism != 1 {
		errs = append(errs, fmt.Errorf("job %s: completions and parallelism must be 1: one verdict", p.job.Name))
	}
	junit, err := p.one("junit")
	if err == nil {
		junit, err = p.expand(junit, -1)
	}
	if err == nil {
		_, _, err = p.onClaim(junit)
	}
	for _, run := range p.flag("run") {
		if glob, _ := p.expand(run, -1); matches(glob, junit) {
			errs = append(errs, fmt.Errorf("job %s: --run %s matches --junit %s: the JUnit file would be read as a shard", p.job.Name, glob, junit))
		}
	}
	return errors.Join(append(errs, err)...)
}

// matches says whether glob matches name; a malformed glob matches nothing.
func matches(glob, name string) bool {
	ok, _ := path.Match(glob, name)
	return ok
}

// checkPods checks what both Jobs' pods share: one image, restartPolicy
// Never, resources, and the same evidence in the environment.
func checkPods(m *manifests, shards, verify *pod) error {
	var errs []error
	image := shards.c.Image
	for i := range m.Jobs {
		j := &m.Jobs[i]
		if j.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
			errs = append(errs, fmt.Errorf("job %s: restartPolicy %q, want Never: a restarted container would run its part again", j.Name, j.Spec.Template.Spec.RestartPolicy))
		}
		for _, c := range containers(&j.Spec.Template.Spec) {
			if c.Image != image || image == "" {
				errs = append(errs, fmt.Errorf("job %s container %s: image %q, job %s: %q: want one image everywhere", j.Name, c.Name, c.Image, shards.job.Name, image))
			}
			r := c.Resources
			if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
				errs = append(errs, fmt.Errorf("job %s container %s: want cpu and memory requests and a memory limit", j.Name, c.Name))
			}
		}
	}
	env := func(p *pod) []corev1.EnvVar {
		return slices.DeleteFunc(slices.Clone(p.c.Env), func(e corev1.EnvVar) bool { return e.Name == "JOB_COMPLETION_INDEX" })
	}
	if !equality.Semantic.DeepEqual(env(shards), env(verify)) || !equality.Semantic.DeepEqual(shards.c.EnvFrom, verify.c.EnvFrom) {
		errs = append(errs, fmt.Errorf("jobs %s and %s: env or envFrom differ: verify must judge from the evidence the shards had", shards.job.Name, verify.job.Name))
	}
	return errors.Join(errs...)
}

// checkSecrets checks no secret reaches a process's arguments or a
// ConfigMap: secret-looking variables come from a secretKeyRef, no argument
// is a database URL flag or holds a password, and no Secret's value shows
// anywhere else.
func checkSecrets(m *manifests) error {
	var errs []error
	var secrets []string
	for _, s := range m.Secrets {
		for _, v := range s.Data {
			secrets = append(secrets, string(v))
		}
		for _, v := range s.StringData {
			secrets = append(secrets, v)
		}
	}
	leaks := func(where, s string) {
		if u, err := url.Parse(s); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				errs = append(errs, fmt.Errorf("%s: %q holds a password", where, s))
			}
		}
		for _, sec := range secrets {
			if sec != "" && strings.Contains(s, sec) {
				errs = append(errs, fmt.Errorf("%s holds a Secret's value", where))
			}
		}
	}
	for _, cm := range m.ConfigMaps {
		for k, v := range cm.Data {
			if secretish.MatchString(k) {
				errs = append(errs, fmt.Errorf("ConfigMap %s: %s belongs in a Secret", cm.Name, k))
			}
			leaks("ConfigMap "+cm.Name+" "+k, v)
		}
	}
	for i := range m.Jobs {
		j := &m.Jobs[i]
		p, err := newPod(m, j)
		if err != nil {
			return err
		}
		for _, a := range slices.Concat(p.c.Command, p.c.Args) {
			if strings.HasPrefix(a, "--database-url") {
				errs = append(errs, fmt.Errorf("job %s: %s in the arguments: any process on the node can read them; use PAYTEST_DATABASE_URL from a secretKeyRef", j.Name, a))
			}
			s, _ := p.expand(a, 0)
			leaks("job "+j.Name+" argument "+a, s)
		}
		for _, e := range p.c.Env {
			if secretish.MatchString(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				errs = append(errs, fmt.Errorf("job %s: %s is not from a secretKeyRef", j.Name, e.Name))
			}
			leaks("job "+j.Name+" env "+e.Name, e.Value)
		}
	}
	return errors.Join(errs...)
}

// checkNamespaces checks every namespaced object lands in one namespace,
// the Namespace declared when there is one.
func checkNamespaces(m *manifests) error {
	want := ""
	if len(m.Namespaces) > 0 {
		want = m.Namespaces[0].Name
	}
	for _, o := range m.namespaced() {
		if want == "" {
			want = o.Namespace
		}
		if o.Namespace != want {
			return fmt.Errorf("%s is in namespace %q, want %q: the Jobs would not find the claim, ConfigMap or Secret", o.Name, o.Namespace, want)
		}
	}
	return nil
}
