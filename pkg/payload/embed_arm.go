package payload

import "embed"

// archData holds scripts/build-payload.sh's output for arm; all: keeps the
// directory's .gitkeep, so a checkout without a payload still compiles.
//
//go:embed all:data/arm
var archData embed.FS

const archDir = "data/arm"
