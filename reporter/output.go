package reporter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// writeTo writes what write produces to path, buffered:
//   - "-" is stdout;
//   - a regular file, or a new one, is written to a temporary file beside it and renamed
//     into place, so a reader never sees half a report (an existing file keeps its mode);
//   - a device, pipe or socket (/dev/null, a FIFO) is written in place: it is not a file to
//     replace;
//   - a symbolic link is followed, and the file it names is written as above; a link to
//     nothing is refused. The link itself is never replaced.
func writeTo(path string, stdout io.Writer, write func(*bufio.Writer) error) error {
	if path == "-" {
		if stdout == nil {
			stdout = os.Stdout
		}
		w := bufio.NewWriterSize(stdout, 256<<10)
		if err := write(w); err != nil {
			return err
		}
		return w.Flush()
	}
	target, info, err := resolve(path)
	if err != nil {
		return err
	}
	if info != nil && !info.Mode().IsRegular() {
		f, err := os.OpenFile(target, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		return writeFile(f, write)
	}
	return replace(target, info, write)
}

// writeFile writes what write produces to f, buffered, and closes it.
func writeFile(f *os.File, write func(*bufio.Writer) error) error {
	w := bufio.NewWriterSize(f, 256<<10)
	err := write(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// resolve follows symbolic links to the file a path names; info is nil when there is none
// yet. A directory, or a link to nothing, is an error.
func resolve(path string) (string, fs.FileInfo, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return "", nil, fmt.Errorf("%s: a symbolic link to nothing: %w", path, err)
		}
		if info, err = os.Stat(target); err != nil {
			return "", nil, err
		}
		path = target
	}
	if info.IsDir() {
		return "", nil, fmt.Errorf("%s: is a directory, not a file", path)
	}
	return path, info, nil
}

// replace writes a regular file through a temporary file and a rename.
func replace(path string, old fs.FileInfo, write func(*bufio.Writer) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mode := fs.FileMode(0o644)
	if old != nil {
		mode = old.Mode().Perm()
	}
	// A fresh name per attempt, created with the final mode, so no chmod is needed.
	tmp := filepath.Join(dir, "."+tempBase(filepath.Base(path))+"."+strconv.FormatUint(rand.Uint64(), 36))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if err = writeFile(f, write); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// tempBase keeps a temporary file's name within the 255 bytes a file name may have.
func tempBase(base string) string {
	if len(base) > 200 {
		return base[:200]
	}
	return base
}

// WriteFile writes data to path as writeTo does, with "-" going to the process's stdout.
func WriteFile(path string, data []byte) error {
	return writeTo(path, nil, func(w *bufio.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
