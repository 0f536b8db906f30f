// Package selfextract makes and runs skiff's release binary, the way k3s's
// is made: a small launcher program followed by the whole skiff program
// compressed with zstd, then a trailer that says what the stream holds.
//
// Run with any arguments, the launcher unpacks the program once into a
// cache directory (XDG_CACHE_HOME/skiff, else /var/cache/skiff as root, else
// ~/.cache/skiff) and execs it with the same arguments, so the release
// binary behaves as skiff does. `unpack PATH` writes the program to PATH
// instead: install.sh installs the unpacked program, so an installed skiff
// starts without the launcher.
package selfextract

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// Magic ends every release binary. It is printable so that a shell script
// can test for it: [ "$(tail -c 16 FILE)" = SKIFF-SFX-V1-END ].
const Magic = "SKIFF-SFX-V1-END"

// TrailerSize is the size of the trailer at the end of a release binary.
const TrailerSize = sha256.Size + 8 + 8 + len(Magic)

// Trailer describes the compressed program, which ends where the trailer
// starts. It is written as Sum, Size and CompressedSize (big-endian), then
// Magic; scripts/pack-release.sh reads Sum as the last 64 bytes' first 32.
type Trailer struct {
	Sum            [sha256.Size]byte // of the program
	Size           int64             // of the program
	CompressedSize int64             // of the zstd stream
}

// Key names the program in the cache: a prefix of its checksum.
func (t Trailer) Key() string { return hex.EncodeToString(t.Sum[:12]) }

func (t Trailer) marshal() []byte {
	b := make([]byte, 0, TrailerSize)
	b = append(b, t.Sum[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(t.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(t.CompressedSize))
	return append(b, Magic...)
}

// errNotRelease means a file has no trailer: a plain skiff program, or a
// release binary that was cut short.
var errNotRelease = errors.New("not a skiff release binary (no trailer at its end): it is a plain skiff program or a damaged download")

// readTrailer reads f's trailer and returns it with the offset of the
// compressed program.
func readTrailer(f *os.File) (Trailer, int64, error) {
	info, err := f.Stat()
	if err != nil {
		return Trailer{}, 0, err
	}
	b := make([]byte, TrailerSize)
	if info.Size() < int64(TrailerSize) {
		return Trailer{}, 0, errNotRelease
	}
	if _, err := f.ReadAt(b, info.Size()-int64(TrailerSize)); err != nil {
		return Trailer{}, 0, fmt.Errorf("reading the trailer of %s: %w", f.Name(), err)
	}
	if !bytes.Equal(b[TrailerSize-len(Magic):], []byte(Magic)) {
		return Trailer{}, 0, errNotRelease
	}
	var t Trailer
	copy(t.Sum[:], b)
	t.Size = int64(binary.BigEndian.Uint64(b[sha256.Size:]))
	t.CompressedSize = int64(binary.BigEndian.Uint64(b[sha256.Size+8:]))
	start := info.Size() - int64(TrailerSize) - t.CompressedSize
	if t.Size <= 0 || t.CompressedSize <= 0 || start <= 0 {
		return Trailer{}, 0, fmt.Errorf("%s has a damaged trailer (program %d bytes, stream %d bytes, file %d bytes)", f.Name(), t.Size, t.CompressedSize, info.Size())
	}
	return t, start, nil
}

// Pack writes a release binary to out: the launcher read from stub, the
// zstd stream of the program read from compressed, and the trailer. The
// stream is decompressed once here, for the trailer's checksum and size, so
// that a stream that does not decompress never becomes a release.
func Pack(out io.Writer, stub io.Reader, compressed io.ReadSeeker) error {
	h := sha256.New()
	size, err := decompress(h, compressed)
	if err != nil {
		return fmt.Errorf("decompressing the program: %w", err)
	}
	if _, err := compressed.Seek(0, io.SeekStart); err != nil {
		return err
	}
	t := Trailer{Size: size}
	copy(t.Sum[:], h.Sum(nil))
	if _, err := io.Copy(out, stub); err != nil {
		return fmt.Errorf("copying the launcher: %w", err)
	}
	if t.CompressedSize, err = io.Copy(out, compressed); err != nil {
		return fmt.Errorf("copying the program: %w", err)
	}
	_, err = out.Write(t.marshal())
	return err
}
