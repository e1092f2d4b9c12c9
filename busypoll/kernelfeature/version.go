package kernelfeature

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release returns the running kernel's release (uname -r), e.g.
// "6.18.44-fc" or "7.3.4+deb13-amd64".
func Release() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// AtLeast reports whether a kernel release such as "6.18.44-fc" or
// "7.3.4+deb13-amd64" is at or above the version since, such as "6.13". A
// release it cannot read counts as older: the caller then skips as on an old
// kernel instead of calling a regression what it cannot tell.
func AtLeast(release, since string) bool {
	have, ok := MajorMinor(release)
	want, ok2 := MajorMinor(since)
	if !ok || !ok2 {
		return false
	}
	if have[0] != want[0] {
		return have[0] > want[0]
	}
	return have[1] >= want[1]
}

// MajorMinor reads the leading "MAJOR.MINOR" of a release or version.
func MajorMinor(release string) ([2]int, bool) {
	var v [2]int
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return v, false
	}
	for i := range 2 {
		p := parts[i]
		end := 0
		for end < len(p) && p[end] >= '0' && p[end] <= '9' {
			end++
		}
		if end == 0 {
			return v, false
		}
		n, err := strconv.Atoi(p[:end])
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}
