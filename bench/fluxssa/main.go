// Command fluxssa is the benchmark's Flux baseline: Flux's own apply engine
// (github.com/fluxcd/pkg/ssa, what kustomize-controller runs) behind a tiny driver.
//
// It reads multi-document YAML (a file, or every *.yaml/*.yml/*.json file in a directory),
// labels the objects the way kustomize-controller does, runs ResourceManager.ApplyAllStaged
// (per-object GET + server-side dry-run apply, then applies only what drifted) and optionally
// waits with the kstatus poller. Timings go to stdout as one JSON object per request.
//
// One-shot:   fluxssa -kubeconfig K -f DIR [-wait]
// Long-lived: fluxssa -kubeconfig K -serve   (one JSON request per stdin line:
//
//	{"path": "...", "wait": false}; one JSON answer per line). A controller is a long-lived
//	process with a warm client and REST mapper, so the benchmark drives this mode.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

type request struct {
	Path string `json:"path"`
	Wait bool   `json:"wait"`
}

type answer struct {
	Objects      int            `json:"objects"`
	ReadSeconds  float64        `json:"read_seconds"`
	ApplySeconds float64        `json:"apply_seconds"`
	WaitSeconds  float64        `json:"wait_seconds"`
	Actions      map[string]int `json:"actions"`
	Error        string         `json:"error,omitempty"`
}

type engine struct {
	manager *ssa.ResourceManager
	apply   ssa.ApplyOptions
	wait    ssa.WaitOptions
	name    string
}

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the target cluster")
	path := flag.String("f", "", "one-shot: a YAML file or a directory of them")
	wait := flag.Bool("wait", false, "one-shot: wait for the applied objects to be ready (kstatus)")
	serve := flag.Bool("serve", false, "long-lived: read one JSON request per stdin line")
	field := flag.String("field-manager", "flux-ssa-bench", "server-side apply field manager")
	group := flag.String("owner-group", "kustomize.toolkit.fluxcd.io", "prefix of the owner labels")
	name := flag.String("owner-name", "bench", "value of the <group>/name owner label")
	concurrency := flag.Int("concurrency", 4, "concurrent dry-run applies (kustomize-controller --concurrent-ssa, default 4)")
	qps := flag.Float64("qps", 50, "client QPS (kustomize-controller --kube-api-qps, default 50)")
	burst := flag.Int("burst", 100, "client burst (kustomize-controller --kube-api-burst, default 100)")
	interval := flag.Duration("wait-interval", 500*time.Millisecond, "kstatus poll interval")
	timeout := flag.Duration("wait-timeout", 5*time.Minute, "wait timeout")
	flag.Parse()
	if *kubeconfig == "" || (*path == "") == !*serve {
		fmt.Fprintln(os.Stderr, "usage: fluxssa -kubeconfig FILE (-f PATH [-wait] | -serve)")
		os.Exit(2)
	}
	eng, err := newEngine(*kubeconfig, *field, *group, *name, *concurrency, float32(*qps), *burst)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	eng.wait = ssa.WaitOptions{Interval: *interval, Timeout: *timeout}
	out := json.NewEncoder(os.Stdout)
	if !*serve {
		a := eng.run(request{Path: *path, Wait: *wait})
		_ = out.Encode(a)
		if a.Error != "" {
			os.Exit(1)
		}
		return
	}
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		var req request
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			_ = out.Encode(answer{Error: "bad request: " + err.Error()})
			continue
		}
		_ = out.Encode(eng.run(req))
	}
}

func newEngine(kubeconfig, field, group, name string, concurrency int, qps float32, burst int) (*engine, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	kube, err := client.New(cfg, client.Options{HTTPClient: httpClient, Mapper: mapper})
	if err != nil {
		return nil, err
	}
	poller := polling.NewStatusPoller(kube, mapper, polling.Options{})
	manager := ssa.NewResourceManager(kube, poller, ssa.Owner{Field: field, Group: group})
	manager.SetConcurrency(concurrency)
	return &engine{manager: manager, apply: ssa.DefaultApplyOptions(), name: name}, nil
}

func (e *engine) run(req request) answer {
	a := answer{Actions: map[string]int{}}
	began := time.Now()
	objects, err := readObjects(req.Path)
	a.ReadSeconds = time.Since(began).Seconds()
	if err != nil {
		a.Error = err.Error()
		return a
	}
	a.Objects = len(objects)
	// What kustomize-controller does before applying: its owner labels on every object.
	e.manager.SetOwnerLabels(objects, e.name, "default")
	ctx := context.Background()
	began = time.Now()
	changes, err := e.manager.ApplyAllStaged(ctx, objects, e.apply)
	a.ApplySeconds = time.Since(began).Seconds()
	if changes != nil {
		for _, entry := range changes.Entries {
			a.Actions[string(entry.Action)]++
		}
	}
	if err != nil {
		a.Error = err.Error()
		return a
	}
	if req.Wait {
		began = time.Now()
		err = e.manager.WaitForSet(changes.ToObjMetadataSet(), e.wait)
		a.WaitSeconds = time.Since(began).Seconds()
		if err != nil {
			a.Error = err.Error()
		}
	}
	return a
}

func readObjects(path string) ([]*unstructured.Unstructured, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if info.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, entry := range entries {
			ext := strings.ToLower(filepath.Ext(entry.Name()))
			if !entry.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				files = append(files, filepath.Join(path, entry.Name()))
			}
		}
		sort.Strings(files)
	}
	var objects []*unstructured.Unstructured
	for _, file := range files {
		found, err := readFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		objects = append(objects, found...)
	}
	return objects, nil
}

func readFile(file string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return utils.ReadObjects(io.Reader(f))
}
