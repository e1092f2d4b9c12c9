package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeELF writes a minimal ELF64 file: a header and program headers (a
// PT_LOAD, and a PT_INTERP naming interp if it is not empty).
func writeELF(t *testing.T, class elf.Class, machine elf.Machine, typ elf.Type, interp string) string {
	t.Helper()
	var buf bytes.Buffer
	progs := []elf.Prog64{{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}}
	if interp != "" {
		data := uint64(64 + 56*2)
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: data, Filesz: uint64(len(interp) + 1), Memsz: uint64(len(interp) + 1), Align: 1})
	}
	hdr := elf.Header64{
		Type: uint16(typ), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT),
		Entry: 0x401000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(progs)), Shentsize: 64,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(class)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	require.NoError(t, binary.Write(&buf, binary.LittleEndian, hdr))
	require.NoError(t, binary.Write(&buf, binary.LittleEndian, progs))
	if interp != "" {
		buf.WriteString(interp + "\x00")
	}
	p := filepath.Join(t.TempDir(), "bin.test")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o755))
	return p
}

func TestCheckStatic(t *testing.T) {
	static := writeELF(t, elf.ELFCLASS64, elf.EM_X86_64, elf.ET_EXEC, "")
	require.NoError(t, checkStatic("test binary", static))
	pie := writeELF(t, elf.ELFCLASS64, elf.EM_X86_64, elf.ET_DYN, "")
	require.NoError(t, checkStatic("test binary", pie), "a static PIE is fine")

	dyn := writeELF(t, elf.ELFCLASS64, elf.EM_X86_64, elf.ET_EXEC, "/lib64/ld-linux-x86-64.so.2")
	err := checkStatic("test binary", dyn)
	require.Error(t, err)
	assert.True(t, errors.Is(err, errDynamic))
	assert.Contains(t, err.Error(), "test binary "+dyn+" is dynamically linked (it needs the loader /lib64/ld-linux-x86-64.so.2)")
	assert.Contains(t, err.Error(), "CGO_ENABLED=0")

	arm := writeELF(t, elf.ELFCLASS64, elf.EM_AARCH64, elf.ET_EXEC, "")
	assert.ErrorContains(t, checkStatic("test binary", arm), "is built for ELFCLASS64 EM_AARCH64; the VM is x86-64")

	obj := writeELF(t, elf.ELFCLASS64, elf.EM_X86_64, elf.ET_REL, "")
	assert.ErrorContains(t, checkStatic("test binary", obj), "is not an executable (ELF type ET_REL)")

	script := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	assert.ErrorContains(t, checkStatic("test binary", script), "test binary "+script+" is not an ELF executable")

	err = checkStatic("test binary", filepath.Join(t.TempDir(), "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestCheckKernel(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "bzImage")
	img := make([]byte, 0x300)
	copy(img[0x202:], "HdrS")
	require.NoError(t, os.WriteFile(good, img, 0o644))
	require.NoError(t, checkKernel(good, "test"))

	vmlinux := writeELF(t, elf.ELFCLASS64, elf.EM_X86_64, elf.ET_EXEC, "")
	assert.ErrorContains(t, checkKernel(vmlinux, envKernel), "kernel "+vmlinux+" (BUSYPOLLTEST_KERNEL) is not an x86 bzImage")

	err := checkKernel(filepath.Join(dir, "none"), envKernel)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorContains(t, err, "kernel (BUSYPOLLTEST_KERNEL)")
}

func TestCheckStaticRealBinary(t *testing.T) {
	// Debian's coreutils are dynamically linked.
	const p = "/bin/true"
	f, err := elf.Open(p)
	if err != nil {
		t.Skipf("no ELF %s here: %v", p, err)
	}
	defer f.Close()
	var dynamic bool
	for _, prog := range f.Progs {
		dynamic = dynamic || prog.Type == elf.PT_INTERP
	}
	if !dynamic || f.Machine != elf.EM_X86_64 {
		t.Skipf("%s is not a dynamic x86-64 binary here", p)
	}
	assert.ErrorIs(t, checkStatic("test binary", p), errDynamic)
}
