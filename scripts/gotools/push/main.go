// shipline-push: `buildah push` of an image in a containers/storage store, with the OCI keys set on
// the way: labels into the image config, annotations into the manifest. The build then needs no
// step for them (buildah turns labels into a committed LABEL step, about 6 % of a small build).
//
// The storage is read with the containers/storage and containers/image versions Debian bookworm's
// buildah (1.28) is built with, so both read and lock the same on-disk records (`--version` prints
// the containers/image version in `buildah version`'s words, for the caller to compare). Flags
// follow `buildah push`; the exit status is 0, or 1 with "Error: ..." on stderr.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/containers/common/pkg/retry"
	"github.com/containers/image/v5/copy"
	"github.com/containers/image/v5/manifest"
	"github.com/containers/image/v5/signature"
	storageTransport "github.com/containers/image/v5/storage"
	"github.com/containers/image/v5/transports/alltransports"
	"github.com/containers/image/v5/types"
	"github.com/containers/image/v5/version"
	"github.com/containers/storage"
	"github.com/opencontainers/go-digest"
)

// pairs is a repeatable key=value flag.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pairs) Set(value string) error {
	key, val, ok := strings.Cut(value, "=")
	if !ok || key == "" {
		return fmt.Errorf("want key=value, got %q", value)
	}
	p[key] = val
	return nil
}

type options struct {
	root, runroot, driver, authfile, digestfile string
	tlsVerify                                   bool
	retries                                     int
	retryDelay                                  time.Duration
	labels, annotations                         pairs
}

func main() {
	o := options{labels: pairs{}, annotations: pairs{}}
	flag.StringVar(&o.root, "root", "", "storage root (as buildah --root)")
	flag.StringVar(&o.runroot, "runroot", "", "storage run root (as buildah --runroot)")
	flag.StringVar(&o.driver, "storage-driver", "", "storage driver (as buildah --storage-driver)")
	flag.StringVar(&o.authfile, "authfile", "", "registry credentials (auth.json)")
	flag.StringVar(&o.digestfile, "digestfile", "", "write the pushed manifest's digest to this file")
	flag.BoolVar(&o.tlsVerify, "tls-verify", true, "require HTTPS and verify certificates")
	flag.IntVar(&o.retries, "retry", 3, "retries of a push that failed on a transient error")
	flag.DurationVar(&o.retryDelay, "retry-delay", 2*time.Second, "delay between retries")
	flag.Var(o.labels, "label", "key=value set in the image config's labels (repeatable)")
	flag.Var(o.annotations, "annotation", "key=value set in the manifest's annotations (repeatable)")
	printVersion := flag.Bool("version", false, "print the containers/image version (as `buildah version` does) and exit")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: shipline-push [flags] IMAGE docker://DESTINATION")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *printVersion {
		fmt.Printf("image Version: %s\n", version.Version)
		return
	}
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	if err := push(context.Background(), flag.Arg(0), flag.Arg(1), o); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func push(ctx context.Context, image, destination string, o options) error {
	storeOptions, err := storage.DefaultStoreOptionsAutoDetectUID()
	if err != nil {
		return err
	}
	if o.root != "" {
		storeOptions.GraphRoot = o.root
	}
	if o.runroot != "" {
		storeOptions.RunRoot = o.runroot
	}
	if o.driver != "" {
		storeOptions.GraphDriverName = o.driver
	}
	store, err := storage.GetStore(storeOptions)
	if err != nil {
		return err
	}
	defer func() { _, _ = store.Shutdown(false) }()
	source, err := storageTransport.Transport.ParseStoreReference(store, image)
	if err != nil {
		return err
	}
	dest, err := alltransports.ParseImageName(destination)
	if err != nil {
		return err
	}
	system := &types.SystemContext{AuthFilePath: o.authfile, DockerInsecureSkipTLSVerify: types.NewOptionalBool(!o.tlsVerify)}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return err
	}
	defer func() { _ = policy.Destroy() }()
	stamped := stampedReference{ImageReference: source, labels: o.labels, annotations: o.annotations}
	var pushed []byte
	err = retry.IfNecessary(ctx, func() error {
		pushed, err = copy.Image(ctx, policy, dest, stamped, &copy.Options{
			ReportWriter: os.Stdout, SourceCtx: system, DestinationCtx: system, RemoveSignatures: true,
		})
		return err
	}, &retry.Options{MaxRetry: o.retries, Delay: o.retryDelay})
	if err != nil {
		return err
	}
	pushedDigest, err := manifest.Digest(pushed)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "Pushed %s as %s\n", destination, pushedDigest)
	if o.digestfile != "" {
		return os.WriteFile(o.digestfile, []byte(pushedDigest.String()), 0o644)
	}
	return nil
}

// stampedReference reads its image as the storage holds it but for the OCI keys.
type stampedReference struct {
	types.ImageReference
	labels, annotations pairs
}

func (r stampedReference) NewImageSource(ctx context.Context, system *types.SystemContext) (types.ImageSource, error) {
	inner, err := r.ImageReference.NewImageSource(ctx, system)
	if err != nil {
		return nil, err
	}
	source, err := stamp(ctx, inner, r.labels, r.annotations)
	if err != nil {
		_ = inner.Close()
		return nil, err
	}
	return source, nil
}

// stampedSource serves the stamped manifest and config; layers come from the storage unchanged.
type stampedSource struct {
	types.ImageSource
	manifest, config []byte
	mimeType         string
	configDigest     digest.Digest
}

func (s *stampedSource) GetManifest(ctx context.Context, instance *digest.Digest) ([]byte, string, error) {
	if instance != nil {
		return nil, "", errors.New("a manifest list cannot be stamped")
	}
	return s.manifest, s.mimeType, nil
}

func (s *stampedSource) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	if info.Digest == s.configDigest {
		return io.NopCloser(bytes.NewReader(s.config)), int64(len(s.config)), nil
	}
	return s.ImageSource.GetBlob(ctx, info, cache)
}

func stamp(ctx context.Context, inner types.ImageSource, labels, annotations pairs) (*stampedSource, error) {
	raw, mimeType, err := inner.GetManifest(ctx, nil)
	if err != nil {
		return nil, err
	}
	configInfo, err := configOf(raw, mimeType)
	if err != nil {
		return nil, err
	}
	blob, _, err := inner.GetBlob(ctx, configInfo, nil)
	if err != nil {
		return nil, err
	}
	config, err := io.ReadAll(blob)
	_ = blob.Close()
	if err != nil {
		return nil, err
	}
	if config, err = withLabels(config, labels); err != nil {
		return nil, err
	}
	configInfo = types.BlobInfo{Digest: digest.FromBytes(config), Size: int64(len(config))}
	stampedManifest, err := stampManifest(raw, mimeType, configInfo, annotations)
	if err != nil {
		return nil, err
	}
	return &stampedSource{ImageSource: inner, manifest: stampedManifest, config: config, mimeType: mimeType,
		configDigest: configInfo.Digest}, nil
}

func configOf(raw []byte, mimeType string) (types.BlobInfo, error) {
	switch mimeType {
	case manifest.DockerV2Schema2MediaType, "application/vnd.oci.image.manifest.v1+json":
		parsed, err := manifest.FromBlob(raw, mimeType)
		if err != nil {
			return types.BlobInfo{}, err
		}
		return parsed.ConfigInfo(), nil
	}
	return types.BlobInfo{}, fmt.Errorf("cannot set labels in a %s image (an OCI or Docker schema 2 image can)", mimeType)
}

// withLabels sets labels in config's "config"."Labels", every other field kept as it was.
func withLabels(config []byte, labels pairs) ([]byte, error) {
	if len(labels) == 0 {
		return config, nil
	}
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(config, &whole); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	runtime := map[string]json.RawMessage{}
	if raw, ok := whole["config"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &runtime); err != nil {
			return nil, fmt.Errorf("image config's config: %w", err)
		}
	}
	merged := map[string]string{}
	if raw, ok := runtime["Labels"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &merged); err != nil {
			return nil, fmt.Errorf("image config's labels: %w", err)
		}
	}
	for key, value := range labels {
		merged[key] = value
	}
	var err error
	if runtime["Labels"], err = json.Marshal(merged); err != nil {
		return nil, err
	}
	if whole["config"], err = json.Marshal(runtime); err != nil {
		return nil, err
	}
	return json.Marshal(whole)
}

func stampManifest(raw []byte, mimeType string, config types.BlobInfo, annotations pairs) ([]byte, error) {
	if mimeType == manifest.DockerV2Schema2MediaType {
		if len(annotations) > 0 {
			return nil, errors.New("a Docker schema 2 manifest has no annotations: build the image as OCI")
		}
		parsed, err := manifest.Schema2FromManifest(raw)
		if err != nil {
			return nil, err
		}
		parsed.ConfigDescriptor.Digest, parsed.ConfigDescriptor.Size = config.Digest, config.Size
		return parsed.Serialize()
	}
	parsed, err := manifest.OCI1FromManifest(raw)
	if err != nil {
		return nil, err
	}
	parsed.Config.Digest, parsed.Config.Size = config.Digest, config.Size
	if len(annotations) > 0 && parsed.Annotations == nil {
		parsed.Annotations = map[string]string{}
	}
	for key, value := range annotations {
		parsed.Annotations[key] = value
	}
	return parsed.Serialize()
}
