package payload

import "embed"

// archData holds scripts/build-payload.sh's output for amd64; all: keeps the
// directory's .gitkeep, so a checkout without a payload still compiles.
//
//go:embed all:data/amd64
var archData embed.FS

const archDir = "data/amd64"
