// Package images handles OCI image content: building small images from
// local files (for demos and tests, with no registry), and, as the images
// work lands, the layered cache, resumable transfer and the master's
// distribution endpoint. It must never reach a registry the user did not
// name.
package images
