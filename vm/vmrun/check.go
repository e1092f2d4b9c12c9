package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// errDynamic is matched by checkStatic's error for a dynamically linked binary.
var errDynamic = errors.New("dynamically linked")

// checkStatic makes sure that the file at path is an x86-64 ELF executable
// that needs no dynamic loader: the VM has no C library, only the initramfs.
// what names the file in errors ("test binary").
func checkStatic(what, path string) error {
	f, err := elf.Open(path)
	if err != nil {
		var fe *elf.FormatError
		if errors.As(err, &fe) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s %s is not an ELF executable: %v", what, path, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s %s is built for %v %v; the VM is x86-64 (GOARCH=amd64)", what, path, f.Class, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s %s is not an executable (ELF type %v)", what, path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		interp := "unknown"
		if b, err := io.ReadAll(io.LimitReader(p.Open(), 4096)); err == nil {
			interp = strings.TrimRight(string(b), "\x00")
		}
		return fmt.Errorf("%s %s is %w (it needs the loader %s), but the VM has no C library: build it with CGO_ENABLED=0 (as in: CGO_ENABLED=0 go test -exec vm/exec)", what, path, errDynamic, interp)
	}
	return nil
}

// checkKernel makes sure that path is a readable x86 boot image (bzImage):
// its setup header carries the magic "HdrS" at offset 0x202.
func checkKernel(path, source string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kernel (%s): %w", source, err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := f.ReadAt(magic, 0x202); err != nil || string(magic) != "HdrS" {
		return fmt.Errorf("kernel %s (%s) is not an x86 bzImage: no \"HdrS\" at offset 0x202 (give arch/x86/boot/bzImage or /boot/vmlinuz-*, not vmlinux)", path, source)
	}
	return nil
}
