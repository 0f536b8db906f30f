//go:build !unix

package image

import "io/fs"

type fileID struct{}

// hardLinkID: without Unix inode numbers every name is stored as its own file.
func hardLinkID(fs.FileInfo) (fileID, bool) { return fileID{}, false }
