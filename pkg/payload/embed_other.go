//go:build !amd64 && !arm64 && !arm

package payload

import "embed"

// archData is empty: skiff builds no node payload for this architecture, so
// the node agent reports ErrMissing (the control plane still runs).
var archData embed.FS

const archDir = "."
