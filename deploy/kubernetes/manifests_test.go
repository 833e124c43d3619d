package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests is every object a set of manifests declares, by kind, in the
// order the files declare them.
type manifests struct {
	Namespaces []corev1.Namespace
	PVCs       []corev1.PersistentVolumeClaim
	ConfigMaps []corev1.ConfigMap
	Secrets    []corev1.Secret
	Jobs       []batchv1.Job
}

// kustomization is the part of kustomize's Kustomization this directory
// uses. It is decoded strictly, so a field added to kustomization.yaml
// must be added here too, and render must learn what it does.
type kustomization struct {
	APIVersion         string         `json:"apiVersion"`
	Kind               string         `json:"kind"`
	Namespace          string         `json:"namespace"`
	Resources          []string       `json:"resources"`
	Images             []kImage       `json:"images"`
	ConfigMapGenerator []kGenerator   `json:"configMapGenerator"`
	Replacements       []kReplacement `json:"replacements"`
}

type kImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName"`
	NewTag  string `json:"newTag"`
	Digest  string `json:"digest"`
}

type kGenerator struct {
	Name     string   `json:"name"`
	Literals []string `json:"literals"`
}

type kReplacement struct {
	Source struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		FieldPath string `json:"fieldPath"`
	} `json:"source"`
	Targets []struct {
		Select struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"select"`
		FieldPaths []string `json:"fieldPaths"`
	} `json:"targets"`
}

const kustomizationFile = "kustomization.yaml"

// decodeStrict decodes one YAML document into v, refusing duplicate keys,
// fields v does not have and anything after the document.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one value in the document")
	}
	return nil
}

// splitDocuments splits a multi-document YAML file, leaving out documents
// that hold nothing but comments.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s != "null" && s != "" {
			docs = append(docs, doc)
		}
	}
}

// add decodes one document into the API type its kind names.
func (m *manifests) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return err
	}
	want := map[string]string{"Job": "batch/v1", "PersistentVolumeClaim": "v1", "ConfigMap": "v1", "Namespace": "v1", "Secret": "v1"}
	if v, ok := want[tm.Kind]; !ok {
		return fmt.Errorf("kind %q: not one this test decodes (Job, PersistentVolumeClaim, ConfigMap, Namespace, Secret)", tm.Kind)
	} else if tm.APIVersion != v {
		return fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, v)
	}
	var err error
	switch tm.Kind {
	case "Job":
		err = decodeInto(doc, &m.Jobs)
	case "PersistentVolumeClaim":
		err = decodeInto(doc, &m.PVCs)
	case "ConfigMap":
		err = decodeInto(doc, &m.ConfigMaps)
	case "Namespace":
		err = decodeInto(doc, &m.Namespaces)
	case "Secret":
		err = decodeInto(doc, &m.Secrets)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return nil
}

func decodeInto[T any](doc []byte, list *[]T) error {
	var v T
	if err := decodeStrict(doc, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// addAll decodes every document of a (multi-document) file.
func (m *manifests) addAll(name string, data []byte) error {
	docs, err := splitDocuments(data)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for i, doc := range docs {
		if err := m.add(doc); err != nil {
			return fmt.Errorf("%s, document %d: %w", name, i+1, err)
		}
	}
	return nil
}

// readDir decodes every manifest in dir and its kustomization.yaml; files
// names every manifest file read.
func readDir(dir string) (m manifests, k kustomization, files []string, err error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	if err != nil {
		return m, k, nil, err
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return m, k, nil, err
		}
		name := filepath.Base(p)
		if name == kustomizationFile {
			if err := decodeStrict(data, &k); err != nil {
				return m, k, nil, fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		files = append(files, name)
		if err := m.addAll(name, data); err != nil {
			return m, k, nil, err
		}
	}
	return m, k, files, nil
}

// render does what kustomize does with k to raw, for the fields k has:
// the generated ConfigMaps (without the name hash), the namespace, the
// images and the replacements. Anything it does not know is an error.
func render(k kustomization, raw manifests) (manifests, error) {
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return manifests{}, fmt.Errorf("kustomization: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	m := deepCopy(raw)
	for _, g := range k.ConfigMapGenerator {
		cm := corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: g.Name}, Data: map[string]string{}}
		for _, l := range g.Literals {
			key, val, ok := strings.Cut(l, "=")
			if !ok {
				return manifests{}, fmt.Errorf("configMapGenerator %s: literal %q is not KEY=VALUE", g.Name, l)
			}
			cm.Data[key] = val
		}
		m.ConfigMaps = append(m.ConfigMaps, cm)
	}
	if k.Namespace != "" {
		for _, o := range m.namespaced() {
			o.Namespace = k.Namespace
		}
	}
	for i := range m.Jobs {
		for _, c := range containers(&m.Jobs[i].Spec.Template.Spec) {
			c.Image = setImage(c.Image, k.Images)
		}
	}
	for _, r := range k.Replacements {
		if err := m.replace(r); err != nil {
			return manifests{}, err
		}
	}
	return m, nil
}

func deepCopy(m manifests) manifests {
	var c manifests
	for _, o := range m.Namespaces {
		c.Namespaces = append(c.Namespaces, *o.DeepCopy())
	}
	for _, o := range m.PVCs {
		c.PVCs = append(c.PVCs, *o.DeepCopy())
	}
	for _, o := range m.ConfigMaps {
		c.ConfigMaps = append(c.ConfigMaps, *o.DeepCopy())
	}
	for _, o := range m.Secrets {
		c.Secrets = append(c.Secrets, *o.DeepCopy())
	}
	for _, o := range m.Jobs {
		c.Jobs = append(c.Jobs, *o.DeepCopy())
	}
	return c
}

// namespaced is the metadata of every namespaced object.
func (m *manifests) namespaced() []*metav1.ObjectMeta {
	var out []*metav1.ObjectMeta
	for i := range m.PVCs {
		out = append(out, &m.PVCs[i].ObjectMeta)
	}
	for i := range m.ConfigMaps {
		out = append(out, &m.ConfigMaps[i].ObjectMeta)
	}
	for i := range m.Secrets {
		out = append(out, &m.Secrets[i].ObjectMeta)
	}
	for i := range m.Jobs {
		out = append(out, &m.Jobs[i].ObjectMeta)
	}
	return out
}

// containers is every container of a pod, init containers first.
func containers(p *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range p.InitContainers {
		out = append(out, &p.InitContainers[i])
	}
	for i := range p.Containers {
		out = append(out, &p.Containers[i])
	}
	return out
}

// setImage applies kustomize's images to one image reference.
func setImage(image string, images []kImage) string {
	name, tag := image, ""
	if i := strings.IndexByte(image, '@'); i >= 0 {
		name, tag = image[:i], image[i:]
	} else if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		name, tag = image[:i], image[i:]
	}
	for _, im := range images {
		if im.Name != name {
			continue
		}
		if im.NewName != "" {
			name = im.NewName
		}
		switch {
		case im.Digest != "":
			tag = "@" + im.Digest
		case im.NewTag != "":
			tag = ":" + im.NewTag
		}
	}
	return name + tag
}

// replace applies one replacement: a ConfigMap's data key into the Job
// fields this directory sets that way.
func (m *manifests) replace(r kReplacement) error {
	key, ok := strings.CutPrefix(r.Source.FieldPath, "data.")
	if r.Source.Kind != "ConfigMap" || !ok {
		return fmt.Errorf("replacement source %s %s: this test knows ConfigMap data.KEY", r.Source.Kind, r.Source.FieldPath)
	}
	cm := m.configMap(r.Source.Name)
	if cm == nil {
		return fmt.Errorf("replacement source: no ConfigMap %s", r.Source.Name)
	}
	val, ok := cm.Data[key]
	if !ok {
		return fmt.Errorf("replacement source: ConfigMap %s has no %s", r.Source.Name, key)
	}
	n, err := strconv.ParseInt(val, 10, 32)
	if err != nil {
		return fmt.Errorf("replacement source %s.%s: %w", r.Source.Name, key, err)
	}
	n32 := int32(n)
	for _, t := range r.Targets {
		j := m.job(t.Select.Name)
		if t.Select.Kind != "Job" || j == nil {
			return fmt.Errorf("replacement target %s %s: no such Job", t.Select.Kind, t.Select.Name)
		}
		for _, f := range t.FieldPaths {
			switch f {
			case "spec.completions":
				j.Spec.Completions = &n32
			case "spec.parallelism":
				j.Spec.Parallelism = &n32
			default:
				return fmt.Errorf("replacement target field %q: this test knows spec.completions and spec.parallelism", f)
			}
		}
	}
	return nil
}

func (m *manifests) job(name string) *batchv1.Job {
	for i := range m.Jobs {
		if m.Jobs[i].Name == name {
			return &m.Jobs[i]
		}
	}
	return nil
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for i := range m.ConfigMaps {
		if m.ConfigMaps[i].Name == name {
			return &m.ConfigMaps[i]
		}
	}
	return nil
}

// checkResources says which manifest files kustomization.yaml leaves out
// and which resources it names that are not manifest files here.
func checkResources(k kustomization, files []string) error {
	var errs []error
	for _, f := range files {
		if !slices.Contains(k.Resources, f) {
			errs = append(errs, fmt.Errorf("%s is not among kustomization.yaml's resources: kubectl apply -k would leave it out", f))
		}
	}
	for _, r := range k.Resources {
		if !slices.Contains(files, r) {
			errs = append(errs, fmt.Errorf("kustomization.yaml names resource %s, which is not a manifest here", r))
		}
	}
	return errors.Join(errs...)
}
