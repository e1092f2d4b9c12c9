package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/netdev-go/busypolltest/vm/vminit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusFilter(t *testing.T) {
	const nonce = "abc123"
	rec := func(s vminit.Status) string { return string(vminit.Format(nonce, s)) }
	ready := vminit.Status{Kind: vminit.Ready}
	exit3 := vminit.Status{Kind: vminit.Exit, Code: 3}
	tests := []struct {
		name     string
		in       string
		out      string
		statuses []vminit.Status
		errs     int
	}{
		{"output only", "hello\nworld", "hello\nworld", nil, 0},
		{"ready, output, exit", rec(ready) + "=== RUN\nPASS\n" + rec(exit3), "=== RUN\nPASS\n", []vminit.Status{ready, exit3}, 0},
		{"no newline before the record", rec(ready) + "partial" + rec(exit3), "partial", []vminit.Status{ready, exit3}, 0},
		{"output after the record", "a" + rec(exit3) + "b", "ab", []vminit.Status{exit3}, 0},
		{"other nonce is output", "\x00vmrun:other:exit 0\n", "\x00vmrun:other:exit 0\n", nil, 0},
		{"NUL bytes in output", "a\x00b\x00\x00c\x00", "a\x00b\x00\x00c\x00", nil, 0},
		{"unfinished record at the end is output", "x\x00vmrun:" + nonce + ":exi", "x\x00vmrun:" + nonce + ":exi", nil, 0},
		{"bad record", "\x00vmrun:" + nonce + ":exit 999\nafter", "after", nil, 1},
		{"overlong record", "\x00vmrun:" + nonce + ":" + strings.Repeat("y", vminit.MaxRecord+1), strings.Repeat("y", vminit.MaxRecord+1), nil, 1},
	}
	for _, tt := range tests {
		// Whole, and split at every byte: records may arrive in pieces.
		for _, chunk := range []int{len(tt.in), 1, 7} {
			t.Run(fmt.Sprintf("%s/chunk=%d", tt.name, chunk), func(t *testing.T) {
				var out bytes.Buffer
				var got []vminit.Status
				errs := 0
				f := newStatusFilter(&out, nonce, func(s vminit.Status) { got = append(got, s) }, func(error) { errs++ })
				for i := 0; i < len(tt.in); i += max(chunk, 1) {
					n, err := f.Write([]byte(tt.in[i:min(i+max(chunk, 1), len(tt.in))]))
					require.NoError(t, err)
					require.Positive(t, n)
				}
				require.NoError(t, f.Close())
				assert.Equal(t, tt.out, out.String(), "chunk %d", chunk)
				assert.Equal(t, tt.statuses, got, "chunk %d", chunk)
				assert.Equal(t, tt.errs, errs, "chunk %d", chunk)
			})
		}
	}
}

// The filter forwards output at once, holding back only what could start
// a record.
func TestStatusFilterStreams(t *testing.T) {
	var out bytes.Buffer
	f := newStatusFilter(&out, "n", func(vminit.Status) {}, func(error) {})
	_, _ = f.Write([]byte("line 1\n"))
	assert.Equal(t, "line 1\n", out.String())
	_, _ = f.Write([]byte("line 2\n\x00vm"))
	assert.Equal(t, "line 1\nline 2\n", out.String())
	_, _ = f.Write([]byte("x"))
	assert.Equal(t, "line 1\nline 2\n\x00vmx", out.String())
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestStatusFilterWriteError(t *testing.T) {
	f := newStatusFilter(failWriter{}, "n", func(vminit.Status) {}, func(error) {})
	_, err := f.Write([]byte("x"))
	assert.ErrorContains(t, err, "broken pipe")
}

func TestTailBuffer(t *testing.T) {
	tb := newTailBuffer(16)
	assert.Empty(t, tb.Lines(5))
	_, _ = tb.Write([]byte("one\r\ntwo\r\nthree\r\nfour\r\n"))
	assert.Equal(t, []string{"three", "four"}, tb.Lines(2))
	assert.Equal(t, []string{"o", "three", "four"}, tb.Lines(10), "only the last 16 bytes are kept")
}

func TestLineWatcher(t *testing.T) {
	var lines []string
	w := &lineWatcher{onLine: func(s string) { lines = append(lines, s) }}
	_, _ = w.Write([]byte("a\r\nb"))
	_, _ = w.Write([]byte("c\nd"))
	assert.Equal(t, []string{"a", "bc"}, lines)
}

func TestPrefixWriter(t *testing.T) {
	var out bytes.Buffer
	w := &prefixWriter{w: &out, prefix: func() string { return "> " }}
	_, _ = w.Write([]byte("a\r\nb"))
	_, _ = w.Write([]byte("c\n"))
	assert.Equal(t, "> a\n> bc\n", out.String())
}
