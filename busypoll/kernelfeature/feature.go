// Package kernelfeature names what a kernel lacks: an
// UnsupportedFeatureError carries the feature and the Linux version that
// brought it (or the kernel option that compiles it out), so that a test
// can tell an old kernel, where it skips, from one that should have the
// feature, where it fails (busypoll/testenv.SkipIfNotSupported). It also
// reads kernel releases ("6.18.44-fc") as versions.
package kernelfeature

import (
	"errors"
	"strings"
)

// UnsupportedFeatureError says that the running kernel lacks a feature.
type UnsupportedFeatureError struct {
	// Name is the feature, e.g. "napi-set irq-suspend-timeout".
	Name string
	// MinimumVersion is the Linux version that brought it, e.g. "6.13";
	// "" where only ConfigOff can explain its absence.
	MinimumVersion string
	// ConfigOff is the kernel option whose absence removes it, where that
	// is known to be the reason, e.g. "CONFIG_NET_RX_BUSY_POLL".
	ConfigOff string
	// Err is what the probe returned, if anything.
	Err error
}

// Error says what is missing and what would bring it, e.g. "kernel has no
// napi-set irq-suspend-timeout: needs Linux 6.13".
func (e *UnsupportedFeatureError) Error() string { return "kernel has no " + e.Missing() }

// Missing says what is missing and what would bring it, with the probe's
// error: "napi-set threaded: needs Linux 6.13 (EINVAL)".
func (e *UnsupportedFeatureError) Missing() string {
	s := e.Name
	switch {
	case e.ConfigOff != "":
		s += ": built without " + e.ConfigOff
	case e.MinimumVersion != "":
		s += ": needs Linux " + e.MinimumVersion
	}
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

// Unwrap returns the probe's error.
func (e *UnsupportedFeatureError) Unwrap() error { return e.Err }

// Is matches errors.ErrUnsupported.
func (e *UnsupportedFeatureError) Is(target error) bool { return target == errors.ErrUnsupported }

// Missing is several UnsupportedFeatureErrors at once; its message joins
// theirs with "; ".
type Missing []*UnsupportedFeatureError

// Error joins the features' messages.
func (m Missing) Error() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap returns each feature's error.
func (m Missing) Unwrap() []error {
	errs := make([]error, len(m))
	for i, e := range m {
		errs[i] = e
	}
	return errs
}

// All returns the UnsupportedFeatureErrors in err's tree, in order.
func All(err error) []*UnsupportedFeatureError {
	var all []*UnsupportedFeatureError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *UnsupportedFeatureError:
			all = append(all, e)
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return all
}
