// Package images handles OCI image content: building small images from
// local files (for demos and tests), the content store (each blob once, by
// digest, verified before it is visible), and the master's registry: the
// read side of the OCI distribution API, pulling through from the
// upstreams that --registries (k3s registries.yaml) and image references
// name.
//
// It must never reach a registry the user did not name: every upstream
// connection passes a dial guard that admits only the hosts chosen for that
// request (the reference's registry, its mirrors, the token realm or blob
// redirect they answer with). It must never serve or keep a blob whose
// bytes do not match its digest, and never read a layer into memory.
package images
