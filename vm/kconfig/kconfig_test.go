package kconfig

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readKernelConfig reads vm/kernel.config, which is not in the VM (its
// initramfs holds a package's testdata only).
func readKernelConfig(t *testing.T) string {
	t.Helper()
	if os.Getenv("BUSYPOLLTEST_VM") == "1" {
		t.Skip("vm/kernel.config is not in the VM (its initramfs holds the package's testdata only): checked on the host")
	}
	b, err := os.ReadFile("../kernel.config")
	require.NoError(t, err)
	return string(b)
}

// The drift test: the kselftest config fragment, vm/kernel.config (what
// vm/build-kernel builds and checks) and the modules vm/vmrun loads are one
// list. Every option of the fragment is a line of vm/kernel.config (modules
// as =m there =y), the fragment has every option of the suite's part and
// nothing else (but CONFIG_MODULES=y, for the modules), and every module
// the VM loads is in vm/kernel.config, as =m in the fragment unless it is
// the VM's NIC driver.
func TestFragmentIsTheSuitesPartOfKernelConfig(t *testing.T) {
	kc := readKernelConfig(t)
	frag, err := Fragment(kc)
	require.NoError(t, err)
	kcLines := map[string]bool{}
	for _, l := range strings.Split(kc, "\n") {
		kcLines[l] = true
	}
	opts, _, err := Suite(kc)
	require.NoError(t, err)
	require.NotEmpty(t, opts)
	got := map[string]string{}
	for _, l := range strings.Split(frag, "\n") {
		if m := optionRE.FindStringSubmatch(l); m != nil {
			assert.NotContains(t, got, m[1], "twice in the fragment")
			got[m[1]] = m[2]
			if m[1] == "CONFIG_MODULES" {
				continue
			}
			assert.True(t, kcLines[m[1]+"=y"], "%s is in the fragment but %s=y is not a line of vm/kernel.config", l, m[1])
		}
	}
	want := map[string]string{"CONFIG_MODULES": "y"}
	for _, o := range opts {
		want[o.Name] = "y"
	}
	for _, m := range Modules {
		assert.True(t, kcLines[m.Option+"=y"], "module %s: %s=y is not a line of vm/kernel.config", m.Name, m.Option)
		if !m.ForNICs {
			want[m.Option] = "m"
		}
	}
	assert.Equal(t, want, got)
	// The options every kernel that passes the suite must have, by name:
	// a reorganisation of vm/kernel.config must not drop them from the
	// suite's part.
	for _, o := range []string{"CONFIG_NET_RX_BUSY_POLL", "CONFIG_VETH", "CONFIG_NETDEVSIM", "CONFIG_NET_NS", "CONFIG_FTRACE", "CONFIG_DEBUG_FS", "CONFIG_IPV6"} {
		assert.Contains(t, got, o)
	}
}

// vm/build-kernel builds from vm/kernel.config, and vm/selftest writes its
// config with this package's command: the two places that must use the one
// list do.
func TestScriptsUseTheList(t *testing.T) {
	readKernelConfig(t)
	tests := []struct{ file, pattern string }{
		{"../build-kernel", `(?m)^fragment=\$here/kernel\.config$`},
		{"../build-kernel", `KCONFIG_ALLCONFIG="\$fragment"`},
		{"../selftest", `go run \./vm/kconfig/fragment vm/kernel\.config >"\$out/config"`},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(tt.file)
		require.NoError(t, err)
		assert.Regexp(t, regexp.MustCompile(tt.pattern), string(b), tt.file)
	}
}

func TestFragmentErrors(t *testing.T) {
	base := "CONFIG_SMP=y\n" + SuiteMarker + " Reason.\n# why\nCONFIG_NET=y\nCONFIG_VETH=y\nCONFIG_NETDEVSIM=y\n"
	tests := []struct {
		name, in, err string
	}{
		{"no marker", "CONFIG_VETH=y\n", "no line starts with"},
		{"two markers", base + SuiteMarker + "\n", "two lines start with"},
		{"a module missing", strings.Replace(base, "CONFIG_NETDEVSIM=y\n", "", 1), "module netdevsim"},
		{"not y", base + "CONFIG_ACPI=n\n", "must say y"},
		{"twice", base + "CONFIG_NET=y\n", "CONFIG_NET twice"},
		{"garbage", base + "CONFIG_\n", "neither an option nor a comment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Fragment(tt.in)
			assert.ErrorContains(t, err, tt.err)
		})
	}
	t.Run("good", func(t *testing.T) {
		f, err := Fragment(base)
		require.NoError(t, err)
		assert.Contains(t, f, "\n# why\nCONFIG_NET=y\nCONFIG_VETH=m\nCONFIG_NETDEVSIM=m\n")
		assert.NotContains(t, f, "CONFIG_SMP")
		assert.NotContains(t, f, SuiteMarker)
	})
}
