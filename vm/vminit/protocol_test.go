package vminit

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFormatParse(t *testing.T) {
	tests := []struct {
		st   Status
		line string
	}{
		{Status{Kind: Ready}, "ready"},
		{Status{Kind: Exit}, "exit 0"},
		{Status{Kind: Exit, Code: 1}, "exit 1"},
		{Status{Kind: Exit, Code: 255}, "exit 255"},
		{Status{Kind: Signal, Code: 9, Msg: "SIGKILL"}, "signal 9 SIGKILL"},
		{Status{Kind: Error, Msg: "mount proc on /proc: no such device"}, "error mount proc on /proc: no such device"},
		{Status{Kind: Begin, Job: 3}, "begin 3"},
		{Status{Kind: End, Job: 0, Code: 0}, "end 0 0"},
		{Status{Kind: End, Job: 11, Code: 137, Msg: "killed by signal 9 (SIGKILL)"}, "end 11 137 killed by signal 9 (SIGKILL)"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			rec := Format("n0nce", tt.st)
			assert.Equal(t, "\x00vmrun:n0nce:"+tt.line+"\n", string(rec))
			got, err := Parse(tt.line)
			require.NoError(t, err)
			assert.Equal(t, tt.st, got)
			assert.Equal(t, tt.st.Kind != Ready && tt.st.Kind != Begin && tt.st.Kind != End, got.Final())
		})
	}
}

func TestFormatOneLine(t *testing.T) {
	rec := Format("n", Status{Kind: Error, Msg: "two\nlines\r\x00"})
	assert.Equal(t, "\x00vmrun:n:error two lines  \n", string(rec))

	long := Format("n", Status{Kind: Error, Msg: strings.Repeat("x", 2*MaxRecord)})
	assert.Len(t, long, len(MarkerPrefix("n"))+MaxRecord, "a long message is cut")
	assert.True(t, bytes.HasSuffix(long, []byte("x\n")))
	assert.Equal(t, 1, bytes.Count(long, []byte("\n")))
}

func TestParseErrors(t *testing.T) {
	for _, line := range []string{
		"", "ready now", "exit", "exit -1", "exit 256", "exit one",
		"signal", "signal 0 X", "signal 65 X", "signal x", "done 0",
		"begin", "begin -1", "begin x", "end", "end 1", "end x 0", "end 1 256", "end 1 x",
	} {
		t.Run(line, func(t *testing.T) {
			_, err := Parse(line)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "status record")
		})
	}
}

func TestUnder(t *testing.T) {
	assert.True(t, under("/tmp", "/tmp"))
	assert.True(t, under("/tmp/x/y", "/tmp"))
	assert.False(t, under("/tmpfoo", "/tmp"))
	assert.False(t, under("/work/main", "/tmp"))
}
