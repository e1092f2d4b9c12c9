package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/netdev-go/busypolltest/vm/vminit"
)

// Files of a minimal root: enough for Go's os/user and its resolver.
var etcFiles = map[string]string{
	"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\n",
	"etc/group":    "root:x:0:\n",
	"etc/hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost\n",
	"etc/hostname": "busypolltest-vm\n",
}

// guestBinDir is where the test binary goes in the VM.
const guestBinDir = "/vmrun/bin"

// writeInitramfs writes the VM's initramfs to w: a small root with /init
// (the file at initPath), the jobs' test binaries, each job's package folder
// with its testdata tree at the same absolute path (and the testdata trees
// of the folders above it up to the module root, which tests of packages
// below it read, e.g. ../../testdata), and the run configuration cfg. With
// cfg.Jobs (a batch: one per job, in the same order) it fills in their
// Binary and Dir; without, there must be one job and it fills in cfg.Binary
// and cfg.Dir. The kernel modules go to their guest paths, and cfg.Modules
// lists those in load order. It returns warnings about files of testdata
// that it left out.
func writeInitramfs(w io.Writer, initPath string, jobs []batchJob, cfg *vminit.Config, modules []moduleFile) ([]string, error) {
	batch := cfg.Jobs != nil
	if batch && len(cfg.Jobs) != len(jobs) || !batch && len(jobs) != 1 {
		return nil, fmt.Errorf("internal error: %d jobs for a configuration with %d", len(jobs), len(cfg.Jobs))
	}
	for _, j := range jobs {
		dir := j.dir
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("package folder %q is not absolute", dir)
		}
		for _, m := range []string{"/dev", "/proc", "/sys", "/vmrun"} {
			if dir == m || strings.HasPrefix(dir, m+"/") || dir == "/" {
				return nil, fmt.Errorf("package folder %s cannot be recreated in the VM: %s is taken by the VM's own files", dir, m)
			}
		}
	}
	c := newCpioWriter(w)
	for _, d := range []struct {
		name string
		perm fs.FileMode
	}{{"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"tmp", fs.ModeSticky | 0o777}, {"run", 0o755}, {"root", 0o700}, {"etc", 0o755}, {"vmrun", 0o755}} {
		if err := c.Dir(d.name, d.perm, time.Time{}); err != nil {
			return nil, err
		}
	}
	// Where programs expect them; /run and /tmp are mounted by vminit.
	if err := c.Symlink("var/run", "../run"); err != nil {
		return nil, err
	}
	if err := c.Dir("var/tmp", fs.ModeSticky|0o777, time.Time{}); err != nil {
		return nil, err
	}
	// The kernel opens /dev/console for init's stdin, stdout and stderr
	// before /dev is mounted.
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	for _, name := range []string{"etc/group", "etc/hostname", "etc/hosts", "etc/passwd"} {
		if err := c.Bytes(name, 0o644, []byte(etcFiles[name])); err != nil {
			return nil, err
		}
	}
	if err := addFile(c, "init", initPath, 0o755); err != nil {
		return nil, err
	}
	cfg.Modules = nil
	madeDirs := map[string]bool{}
	for _, m := range modules {
		// The folders above it, once each (lib, lib/modules, ...).
		var parents []string
		for d := path.Dir(strings.TrimPrefix(m.guest, "/")); d != "." && !madeDirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			madeDirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := c.Dir(parents[i], 0o755, time.Time{}); err != nil {
				return nil, err
			}
		}
		if err := addFile(c, m.guest, m.host, 0o644); err != nil {
			return nil, err
		}
		if m.load {
			cfg.Modules = append(cfg.Modules, m.guest)
		}
	}
	var warnings []string
	added := map[string]bool{} // folders whose testdata is in
	for i, j := range jobs {
		guest := path.Join(guestBinDir, filepath.Base(j.binary))
		if batch {
			// Two packages' binaries may share a base name.
			guest = path.Join(guestBinDir, fmt.Sprintf("%d-%s", i, filepath.Base(j.binary)))
			cfg.Jobs[i].Binary, cfg.Jobs[i].Dir = guest, j.dir
		} else {
			cfg.Binary, cfg.Dir = guest, j.dir
		}
		if err := addFile(c, guest, j.binary, 0o755); err != nil {
			return nil, err
		}
		if added[j.dir] {
			continue
		}
		if err := c.Dir(j.dir, 0o755, time.Time{}); err != nil {
			return nil, err
		}
		for _, d := range testdataDirs(j.dir) {
			if added[d] {
				continue
			}
			added[d] = true
			w, err := addTree(c, filepath.Join(d, "testdata"))
			if err != nil {
				return nil, err
			}
			warnings = append(warnings, w...)
		}
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Bytes(vminit.ConfigPath, 0o600, b); err != nil {
		return nil, err
	}
	return warnings, c.Close()
}

// testdataDirs returns dir and, if dir is inside a Go module, the folders
// above it up to the module's root (the nearest one with a go.mod): the
// folders whose testdata trees go into the VM.
func testdataDirs(dir string) []string {
	dirs := []string{dir}
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return dirs
		}
		parent := filepath.Dir(d)
		if parent == d {
			return dirs[:1] // not in a module: the package folder only
		}
		d = parent
		dirs = append(dirs, d)
	}
}

func addFile(c *cpioWriter, name, src string, perm fs.FileMode) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	return c.File(name, perm, st.ModTime(), st.Size(), f)
}

// addTree adds the folder root (if it exists) with everything in it under
// the same absolute path. Symbolic links are kept as links; device files,
// sockets and pipes are left out with a warning.
func addTree(c *cpioWriter, root string) ([]string, error) {
	st, err := os.Stat(root)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", root)
	}
	// Walk the real folder if root itself is a link, but name the
	// entries after root.
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	var warnings []string
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(real, p)
		if err != nil {
			return err
		}
		name := filepath.Join(root, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return c.Dir(name, info.Mode(), info.ModTime())
		case info.Mode().IsRegular():
			return addFile(c, name, p, info.Mode())
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return c.Symlink(name, target)
		default:
			warnings = append(warnings, fmt.Sprintf("left out %s: %v is not a file, folder or link", name, info.Mode().Type()))
			return nil
		}
	})
	return warnings, err
}
