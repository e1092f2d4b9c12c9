package kmod

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile is finit_module's flag for a compressed file
// (include/uapi/linux/module.h, Linux 5.17+).
const moduleInitCompressedFile = 4

// LoadError is the error of [Load]: which module failed, how, and what the
// kernel logged about it.
type LoadError struct {
	Name string // module name
	Path string // the file
	Err  error  // the system call's error (an errno)
	// KernelSaid holds the kernel log's last lines that name the module
	// (such as "netdevsim: Unknown symbol ..."), if any could be read.
	KernelSaid []string
}

func (e *LoadError) Error() string {
	msg := fmt.Sprintf("load module %s (%s): %v", e.Name, e.Path, e.Err)
	if len(e.KernelSaid) > 0 {
		msg += "; the kernel said: " + strings.Join(e.KernelSaid, " | ")
	}
	return msg
}

func (e *LoadError) Unwrap() error { return e.Err }

// Load loads the module file at path with the parameters params ("" for
// none, else "name=value ..."). A module the kernel already has is not an
// error. A compressed file goes to the kernel as it is
// (MODULE_INIT_COMPRESSED_FILE); if the kernel cannot decompress it, Load
// decompresses it and uses init_module(2).
func Load(path, params string) error {
	_, err := load(path, params)
	return err
}

// load is Load, and reports whether the file was decompressed here rather
// than by the kernel.
func load(path, params string) (decompressedHere bool, err error) {
	name := Name(path)
	fail := func(err error) error {
		return &LoadError{Name: name, Path: path, Err: err, KernelSaid: kernelSaid(name)}
	}
	f, err := os.Open(path)
	if err != nil {
		return false, fail(err)
	}
	defer f.Close()
	compressed := Compression(path) != ""
	flags := 0
	if compressed {
		flags = moduleInitCompressedFile
	}
	err = unix.FinitModule(int(f.Fd()), params, flags)
	switch {
	case err == nil, errors.Is(err, unix.EEXIST):
		return false, nil
	case compressed && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)),
		errors.Is(err, unix.ENOSYS):
		// EINVAL: a kernel older than the flag, or built for another
		// compression; EOPNOTSUPP: no CONFIG_MODULE_DECOMPRESS; ENOSYS:
		// no finit_module.
		image, rerr := ReadFile(path)
		if rerr != nil {
			return true, fail(rerr)
		}
		err = unix.InitModule(image, params)
		if err == nil || errors.Is(err, unix.EEXIST) {
			return true, nil
		}
		return true, fail(err)
	}
	return false, fail(err)
}

// kernelSaid returns the kernel log's last few lines that name the module.
func kernelSaid(name string) []string {
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_SIZE_BUFFER, nil)
	if err != nil || n <= 0 {
		return nil
	}
	buf := make([]byte, n)
	n, err = unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		return nil
	}
	dashed := strings.ReplaceAll(name, "_", "-")
	var said []string
	for _, l := range bytes.Split(buf[:n], []byte("\n")) {
		s := string(l)
		if strings.Contains(s, name) || strings.Contains(s, dashed) {
			said = append(said, strings.TrimSpace(s))
		}
	}
	if len(said) > 3 {
		said = said[len(said)-3:]
	}
	return said
}
