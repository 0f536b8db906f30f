//go:build unix

package image

import (
	"io/fs"
	"syscall"
)

type fileID struct{ dev, ino uint64 }

// hardLinkID identifies a file that has more than one name, so the layer
// stores it once and links the other names to it.
func hardLinkID(info fs.FileInfo) (fileID, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok || st.Nlink < 2 {
		return fileID{}, false
	}
	// Conversions because the field types differ between Unix systems.
	return fileID{uint64(st.Dev), uint64(st.Ino)}, true
}
