// Package oci is the image store shared by Paddock's runtime plugins (runc
// and gVisor): it pulls images from OCI and Docker registries, imports image
// archives, keeps their content on disk by digest, unpacks each layer once and
// stacks the layers into a writable overlayfs root filesystem per container.
//
// # On disk
//
// A Store lives in one directory (for example /var/lib/paddock/images):
//
//	blobs/sha256/<hex>               manifests, configs and compressed layers, verified against their digest
//	layers/sha256/<diffid>/rootfs    each layer unpacked once, whiteouts in overlayfs form
//	index.json                       image references → image metadata (manifest digest, config, layers)
//	rootfs/<container>.json          the root filesystems in use, so that GC keeps their layers
//	empty/                           the lower directory of an image without layers
//	locks/, tmp/, gc.lock, index.lock
//
// Everything is written to a temporary name under tmp/ (a file is fsynced, an
// unpacked layer synced with syncfs) and renamed into place, so a crash never
// leaves a half-written blob, layer or index. A blob that was damaged anyway
// (say a truncated file) fails digest verification on the next Pull, which
// fetches it again.
//
// # Concurrency
//
// Several processes (several plugins on one node) may open Stores on the same
// directory, and a Store's methods may be called from many goroutines. They
// coordinate with flock(2): Pull, Import and PrepareRootfs hold gc.lock
// shared and GC holds it exclusive, so GC never removes content that a pull
// is about to reference; index.lock serializes index updates; a lock per blob
// and per layer makes one caller download or unpack it while the others wait
// and then reuse the result.
//
// # Layers and root filesystems
//
// Layers are unpacked on their own, never on top of their parents, so one
// unpacked layer serves every image that contains it. A layer's whiteouts are
// written as overlayfs understands them (a 0/0 character device for
// ".wh.NAME", the trusted.overlay.opaque=y xattr for ".wh..wh..opq"), and
// PrepareRootfs mounts the image's layers as overlay lowerdirs with a
// per-container upperdir. Unpacking refuses entries that would leave the
// layer's directory: absolute names, ".." components, and names or hard-link
// targets whose directories are symbolic links (symbolic links are created
// as they are but never followed while unpacking). Writing whiteouts, device
// nodes, ownership and trusted xattrs needs root, as do the overlay mounts.
//
// # Errors
//
// Errors carry the classes of core/errdefs: ErrInvalidArgument for a bad
// reference or bad content (digest mismatch, path traversal in a layer),
// ErrNotFound for an image unknown here or in the registry,
// ErrPermissionDenied when the registry refuses the credentials (401, 403),
// ErrUnavailable when the registry cannot be reached, and
// ErrFailedPrecondition when a registry speaks only plain HTTP but was not
// declared insecure.
package oci
