package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/netdev-go/busypolltest/vm/vminit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteInitramfs(t *testing.T) {
	tmp := t.TempDir()
	initPath := filepath.Join(tmp, "vmrun")
	require.NoError(t, os.WriteFile(initPath, []byte("INIT"), 0o755))
	binary := filepath.Join(tmp, "b001", "pkg.test")
	require.NoError(t, os.MkdirAll(filepath.Dir(binary), 0o755))
	require.NoError(t, os.WriteFile(binary, []byte("TEST"), 0o700))

	dir := filepath.Join(tmp, "src", "pkg")
	// The module root's testdata goes in too; a folder above the module's does not.
	require.NoError(t, os.MkdirAll(filepath.Join(tmp, "src", "testdata"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "src", "go.mod"), []byte("module x\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "src", "testdata", "root.txt"), []byte("root"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(tmp, "testdata"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "testdata", "outside.txt"), []byte("no"), 0o644))
	td := filepath.Join(dir, "testdata")
	require.NoError(t, os.MkdirAll(filepath.Join(td, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(td, "a.txt"), []byte("aaa"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(td, "sub", "b.bin"), []byte{0, 1, 2}, 0o600))
	require.NoError(t, os.Symlink("a.txt", filepath.Join(td, "link")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(td, "fifo"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pkg_test.go"), []byte("package pkg"), 0o644))

	cfg := &vminit.Config{Nonce: "n", Port: "/dev/ttyS1", Args: []string{"-test.v"}, Env: []string{"A=b"}}
	var buf bytes.Buffer
	warnings, err := writeInitramfs(&buf, initPath, []batchJob{{binary: binary, dir: dir}}, cfg, nil)
	require.NoError(t, err)
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0], "left out "+filepath.Join(td, "fifo"))

	entries := parseCpio(t, buf.Bytes())
	byName := map[string]cpioEntry{}
	seen := map[string]bool{".": true}
	for _, e := range entries {
		byName[e.name] = e
		assert.True(t, seen[filepath.Dir(e.name)], "%s comes before its folder", e.name)
		seen[e.name] = true
	}
	rel := strings.TrimPrefix(dir, "/")
	want := map[string]struct {
		mode uint32
		data string
	}{
		"init":                  {0o100755, "INIT"},
		"vmrun/bin/pkg.test":    {0o100755, "TEST"},
		"dev/console":           {0o020600, ""},
		"tmp":                   {0o041777, ""},
		"etc/passwd":            {0o100644, etcFiles["etc/passwd"]},
		rel:                     {0o040755, ""},
		rel + "/testdata/a.txt": {0o100644, "aaa"},
		strings.TrimPrefix(filepath.Join(tmp, "src", "testdata", "root.txt"), "/"): {0o100644, "root"},
		rel + "/testdata/sub/b.bin": {0o100600, "\x00\x01\x02"},
		rel + "/testdata/link":      {0o120777, "a.txt"},
		rel + "/testdata/sub":       {0o040755, ""},
		rel + "/testdata":           {0o040755, ""},
		"vmrun/config.json":         {0o100600, ""},
		"proc":                      {0o040555, ""},
		"sys":                       {0o040555, ""},
	}
	for name, w := range want {
		e, ok := byName[name]
		if !assert.True(t, ok, "missing %s", name) {
			continue
		}
		assert.Equal(t, w.mode, e.mode, "mode of %s: %o", name, e.mode)
		if w.data != "" {
			assert.Equal(t, w.data, e.data, name)
		}
	}
	assert.NotContains(t, byName, rel+"/pkg_test.go", "only testdata goes in")
	assert.NotContains(t, byName, strings.TrimPrefix(filepath.Join(tmp, "testdata", "outside.txt"), "/"), "nothing above the module root")
	assert.NotContains(t, byName, strings.TrimPrefix(filepath.Join(tmp, "src", "go.mod"), "/"), "only testdata goes in")
	assert.NotContains(t, byName, rel+"/testdata/fifo")

	var got vminit.Config
	require.NoError(t, json.Unmarshal([]byte(byName["vmrun/config.json"].data), &got))
	assert.Equal(t, vminit.Config{
		Nonce: "n", Port: "/dev/ttyS1", Binary: "/vmrun/bin/pkg.test",
		Args: []string{"-test.v"}, Env: []string{"A=b"}, Dir: dir,
	}, got)
}

func TestWriteInitramfsNoTestdata(t *testing.T) {
	tmp := t.TempDir()
	f := filepath.Join(tmp, "f")
	require.NoError(t, os.WriteFile(f, []byte("x"), 0o755))
	var buf bytes.Buffer
	_, err := writeInitramfs(&buf, f, []batchJob{{binary: f, dir: "/work/main/napi"}}, &vminit.Config{}, nil)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, e := range parseCpio(t, buf.Bytes()) {
		names[e.name] = true
	}
	assert.True(t, names["work/main/napi"], "the working folder exists even without testdata")
}

func TestWriteInitramfsErrors(t *testing.T) {
	tmp := t.TempDir()
	f := filepath.Join(tmp, "f")
	require.NoError(t, os.WriteFile(f, []byte("x"), 0o755))
	tests := []struct {
		name, init, binary, dir, want string
	}{
		{"relative dir", f, f, "pkg", `package folder "pkg" is not absolute`},
		{"dir under /proc", f, f, "/proc/1", "package folder /proc/1 cannot be recreated in the VM: /proc is taken"},
		{"root dir", f, f, "/", "package folder / cannot be recreated"},
		{"missing binary", f, filepath.Join(tmp, "none"), tmp, "no such file"},
		{"binary is a folder", f, tmp, tmp, "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			_, err := writeInitramfs(&buf, tt.init, []batchJob{{binary: tt.binary, dir: tt.dir}}, &vminit.Config{}, nil)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestWriteInitramfsBatch(t *testing.T) {
	tmp := t.TempDir()
	initPath := filepath.Join(tmp, "vmrun")
	require.NoError(t, os.WriteFile(initPath, []byte("INIT"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "go.mod"), []byte("module x\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(tmp, "testdata"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmp, "testdata", "root"), []byte("root"), 0o644))
	var jobs []batchJob
	for i, pkg := range []string{"a", "b/a"} {
		dir := filepath.Join(tmp, pkg)
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "testdata"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "testdata", "f"), []byte(pkg), 0o644))
		// Two binaries of the same name, as go test -c names them by the
		// package's last element.
		bin := filepath.Join(tmp, "bin", string(rune('0'+i)), "a.test")
		require.NoError(t, os.MkdirAll(filepath.Dir(bin), 0o755))
		require.NoError(t, os.WriteFile(bin, []byte("TEST "+pkg), 0o755))
		jobs = append(jobs, batchJob{name: pkg, dir: dir, binary: bin})
	}
	// The module root's testdata goes in once, for both.
	jobs = append(jobs, batchJob{name: "again", dir: jobs[0].dir, binary: jobs[0].binary})

	cfg := &vminit.Config{Nonce: "n", Port: "/dev/ttyS1", Jobs: []vminit.Job{{Name: "a"}, {Name: "b/a"}, {Name: "again"}}}
	var buf bytes.Buffer
	_, err := writeInitramfs(&buf, initPath, jobs, cfg, nil)
	require.NoError(t, err)
	byName := map[string]string{}
	for _, e := range parseCpio(t, buf.Bytes()) {
		_, dup := byName[e.name]
		assert.False(t, dup && e.mode&0o170000 != 0o040000, "%s is in twice", e.name)
		byName[e.name] = e.data
	}
	assert.Equal(t, "TEST a", byName["vmrun/bin/0-a.test"])
	assert.Equal(t, "TEST b/a", byName["vmrun/bin/1-a.test"])
	assert.Equal(t, "TEST a", byName["vmrun/bin/2-a.test"])
	assert.Equal(t, "b/a", byName[strings.TrimPrefix(filepath.Join(tmp, "b/a/testdata/f"), "/")])
	assert.Equal(t, "root", byName[strings.TrimPrefix(filepath.Join(tmp, "testdata/root"), "/")])
	assert.Equal(t, []vminit.Job{
		{Name: "a", Binary: "/vmrun/bin/0-a.test", Dir: jobs[0].dir},
		{Name: "b/a", Binary: "/vmrun/bin/1-a.test", Dir: jobs[1].dir},
		{Name: "again", Binary: "/vmrun/bin/2-a.test", Dir: jobs[0].dir},
	}, cfg.Jobs)

	_, err = writeInitramfs(&buf, initPath, jobs[:1], &vminit.Config{Jobs: []vminit.Job{{}, {}}}, nil)
	assert.EqualError(t, err, "internal error: 1 jobs for a configuration with 2")
}
