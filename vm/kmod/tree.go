package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrNotFound is matched by the error of [Tree.Resolve] for a module that
// is neither in the tree nor built into the kernel.
var ErrNotFound = errors.New("no such module")

// suffixes of module files, uncompressed first.
var suffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// Module is one module file to load.
type Module struct {
	// Name is the module's name as the kernel spells it (underscores:
	// "virtio_net").
	Name string
	// Path is the file, relative to the tree's root.
	Path string
}

// Tree is a kernel's module tree.
type Tree struct {
	// Root is the tree's folder.
	Root string
	// Source says where the dependencies come from: "modules.dep" or
	// ".modinfo".
	Source  string
	files   map[string]string   // module name -> path relative to Root
	deps    map[string][]string // from modules.dep; nil: read .modinfo
	builtin map[string]bool
}

// Name turns a module file's name or a module name as a user writes it
// ("virtio-net") into the kernel's spelling of the name ("virtio_net").
func Name(file string) string {
	base := filepath.Base(file)
	for _, s := range slices.Backward(suffixes) {
		if b, ok := strings.CutSuffix(base, s); ok {
			base = b
			break
		}
	}
	base = strings.TrimSuffix(base, ".o") // modules.order of a build tree
	return strings.ReplaceAll(base, "-", "_")
}

// Open reads the module tree at root: an installed lib/modules/RELEASE
// folder, or a kernel build tree. It reads modules.dep and modules.builtin
// where they exist; without modules.dep it finds the module files itself and
// reads each one's dependencies from its .modinfo when [Tree.Resolve] needs
// them.
func Open(root string) (*Tree, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("module tree %s is not a folder", root)
	}
	t := &Tree{Root: root, files: map[string]string{}, builtin: map[string]bool{}}
	if err := t.readBuiltin(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(root, "modules.dep"))
	switch {
	case err == nil:
		defer f.Close()
		t.Source = "modules.dep"
		return t, t.readDep(f)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	t.Source = ".modinfo"
	return t, t.findFiles()
}

// readDep reads modules.dep: "path: dep-path dep-path ...".
func (t *Tree) readDep(r io.Reader) error {
	t.deps = map[string][]string{}
	s := bufio.NewScanner(r)
	s.Buffer(nil, 1<<20)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%s line %d: no colon in %q", filepath.Join(t.Root, "modules.dep"), n, line)
		}
		name := Name(file)
		t.files[name] = file
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, Name(d))
		}
		t.deps[name] = deps
	}
	return s.Err()
}

func (t *Tree) readBuiltin() error {
	b, err := os.ReadFile(filepath.Join(t.Root, "modules.builtin"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, l := range strings.Fields(string(b)) {
		t.builtin[Name(l)] = true
	}
	return nil
}

// findFiles finds the module files of a tree without modules.dep. Folders
// that are links (an installed tree's build and source) are not followed.
func (t *Tree) findFiles() error {
	return filepath.WalkDir(t.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != t.Root && (strings.HasPrefix(n, ".") || n == "Documentation" || n == "tools" || n == "scripts") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isModuleFile(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(t.Root, p)
		if err != nil {
			return err
		}
		name := Name(rel)
		if old, ok := t.files[name]; ok && old != rel {
			return fmt.Errorf("module %s is in the tree twice: %s and %s", name, old, rel)
		}
		t.files[name] = rel
		return nil
	})
}

func isModuleFile(name string) bool {
	for _, s := range suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// Builtin reports whether the kernel has the module built in.
func (t *Tree) Builtin(name string) bool { return t.builtin[Name(name)] }

// Has reports whether the tree has a file for the module.
func (t *Tree) Has(name string) bool {
	_, ok := t.files[Name(name)]
	return ok
}

// dependencies returns the names of the modules that name needs.
func (t *Tree) dependencies(name string) ([]string, error) {
	if t.deps != nil {
		return t.deps[name], nil
	}
	info, err := ReadInfo(filepath.Join(t.Root, t.files[name]))
	if err != nil {
		return nil, err
	}
	var deps []string
	for _, d := range strings.Split(info["depends"], ",") {
		if d = strings.TrimSpace(d); d != "" {
			deps = append(deps, Name(d))
		}
	}
	return deps, nil
}

// Resolve returns the files to load for the named modules, each module's
// dependencies before it and every module once. Built-in modules are left
// out. A module that is neither in the tree nor built in is an error
// matching [ErrNotFound] that names it and, for a dependency, what needs it.
func (t *Tree) Resolve(names ...string) ([]Module, error) {
	var order []Module
	done := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if done[name] || t.builtin[name] {
			return nil
		}
		if slices.Contains(chain, name) {
			return fmt.Errorf("module dependency loop in %s: %s", t.Root, strings.Join(append(chain, name), " -> "))
		}
		file, ok := t.files[name]
		if !ok {
			if len(chain) > 0 {
				return fmt.Errorf("module %s (needed by %s) is not in %s and not built in: %w", name, strings.Join(chain, " <- "), t.Root, ErrNotFound)
			}
			return fmt.Errorf("module %s is not in %s and not built in: %w", name, t.Root, ErrNotFound)
		}
		deps, err := t.dependencies(name)
		if err != nil {
			return fmt.Errorf("module %s: %w", name, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		done[name] = true
		order = append(order, Module{Name: name, Path: file})
		return nil
	}
	for _, n := range names {
		if err := visit(Name(n), nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Compression returns the compression of a module file by its name: "xz",
// "zstd", "gzip", or "" for an uncompressed .ko.
func Compression(path string) string {
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		return "xz"
	case strings.HasSuffix(path, ".ko.zst"):
		return "zstd"
	case strings.HasSuffix(path, ".ko.gz"):
		return "gzip"
	}
	return ""
}

// ReadFile returns the module file's contents, decompressed.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch c := Compression(path); c {
	case "xz":
		r, err = xz.NewReader(bufio.NewReader(f))
	case "zstd":
		var d *zstd.Decoder
		d, err = zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err == nil {
			defer d.Close()
			r = d
		}
	case "gzip":
		r, err = gzip.NewReader(f)
	}
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", path, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("decompress %s: %w", path, err)
	}
	return b, nil
}

// ReadInfo returns the "key=value" entries of a module file's .modinfo
// section (for keys that occur more than once, such as alias, the last).
func ReadInfo(path string) (map[string]string, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section: not a kernel module", path)
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", path, err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			info[k] = v
		}
	}
	return info, nil
}
