package images

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeorch/edge/core"
)

// MaxManifestSize caps a manifest or index (the distribution spec's
// registries take 4 MiB).
const MaxManifestSize = 4 << 20

// Manifest media types the registry keeps.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// ManifestMediaTypes are the manifest types the master asks upstreams for
// and serves, indexes first.
var ManifestMediaTypes = []string{
	ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList,
	ocispec.MediaTypeImageManifest, MediaTypeDockerManifest,
}

// IsIndex reports whether mediaType is a multi-platform index.
func IsIndex(mediaType string) bool {
	return mediaType == ocispec.MediaTypeImageIndex || mediaType == MediaTypeDockerManifestList
}

// ParsedManifest is a decoded manifest or index: what it points at.
type ParsedManifest struct {
	MediaType string
	// Manifests are an index's platform manifests.
	Manifests []ocispec.Descriptor
	// Config and Layers are an image manifest's blobs.
	Config ocispec.Descriptor
	Layers []ocispec.Descriptor
}

// Blobs returns an image manifest's config and layers.
func (m *ParsedManifest) Blobs() []ocispec.Descriptor {
	if IsIndex(m.MediaType) {
		return nil
	}
	return append([]ocispec.Descriptor{m.Config}, m.Layers...)
}

// ParseManifest decodes and checks a manifest or index. contentType is what
// the registry said it is (may be empty or generic); the body's own
// mediaType field decides when it has one, and the two must not disagree.
// Errors are EINVALID.
func ParseManifest(contentType string, data []byte) (*ParsedManifest, error) {
	if len(data) > MaxManifestSize {
		return nil, core.Errorf(core.EINVALID, "manifest of %d bytes is over the %d-byte limit", len(data), MaxManifestSize)
	}
	var raw struct {
		SchemaVersion int                  `json:"schemaVersion"`
		MediaType     string               `json:"mediaType"`
		Manifests     []ocispec.Descriptor `json:"manifests"`
		Config        *ocispec.Descriptor  `json:"config"`
		Layers        []ocispec.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, core.Errorf(core.EINVALID, "manifest is not valid JSON: %v", err)
	}
	if raw.SchemaVersion != 2 {
		return nil, core.Errorf(core.EINVALID, "manifest schemaVersion %d: only 2 is supported", raw.SchemaVersion)
	}
	ct, _, _ := mime.ParseMediaType(contentType)
	if !isManifestType(ct) {
		ct = ""
	}
	mt := raw.MediaType
	switch {
	case mt != "" && ct != "" && mt != ct:
		return nil, core.Errorf(core.EINVALID, "manifest says mediaType %q but was served as %q", mt, ct)
	case mt == "":
		mt = ct
	}
	if mt == "" { // an OCI manifest may omit mediaType: tell by its fields
		if raw.Manifests != nil {
			mt = ocispec.MediaTypeImageIndex
		} else {
			mt = ocispec.MediaTypeImageManifest
		}
	}
	if !isManifestType(mt) {
		return nil, core.Errorf(core.EINVALID, "manifest mediaType %q is not supported (want one of %s)", mt, strings.Join(ManifestMediaTypes, ", "))
	}
	p := &ParsedManifest{MediaType: mt}
	check := func(field string, d ocispec.Descriptor) error {
		if err := d.Digest.Validate(); err != nil {
			return core.Errorf(core.EINVALID, "manifest %s: digest %q: %v", field, d.Digest, err)
		}
		if d.Size < 0 {
			return core.Errorf(core.EINVALID, "manifest %s: negative size", field)
		}
		return nil
	}
	if IsIndex(mt) {
		if raw.Config != nil || raw.Layers != nil {
			return nil, core.Errorf(core.EINVALID, "index has config or layers")
		}
		for i, d := range raw.Manifests {
			if err := check(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return nil, err
			}
		}
		p.Manifests = raw.Manifests
		return p, nil
	}
	if raw.Manifests != nil {
		return nil, core.Errorf(core.EINVALID, "image manifest has manifests")
	}
	if raw.Config == nil {
		return nil, core.Errorf(core.EINVALID, "image manifest has no config")
	}
	if err := check("config", *raw.Config); err != nil {
		return nil, err
	}
	for i, d := range raw.Layers {
		if err := check(fmt.Sprintf("layers[%d]", i), d); err != nil {
			return nil, err
		}
	}
	p.Config, p.Layers = *raw.Config, raw.Layers
	return p, nil
}

func isManifestType(mt string) bool {
	for _, t := range ManifestMediaTypes {
		if t == mt {
			return true
		}
	}
	return false
}

// SelectPlatform picks os/arch[/variant] from an index's manifests; ok is
// false if none matches.
func (m *ParsedManifest) SelectPlatform(os, arch, variant string) (ocispec.Descriptor, bool) {
	var found *ocispec.Descriptor
	for i, d := range m.Manifests {
		if d.Platform == nil || d.Platform.OS != os || d.Platform.Architecture != arch {
			continue
		}
		if variant == "" || d.Platform.Variant == variant {
			return d, true
		}
		if found == nil {
			found = &m.Manifests[i]
		}
	}
	if found != nil {
		return *found, true
	}
	return ocispec.Descriptor{}, false
}
