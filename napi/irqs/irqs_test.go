package irqs

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `           CPU0       CPU1       
  0:         44          0   IO-APIC   2-edge      timer
 24:          0          0   PCI-MSIX-0000:00:03.0   0-edge      virtio0-config
 25:         71          7   PCI-MSIX-0000:00:03.0   1-edge      virtio0-input.0
 26:          3          1   PCI-MSIX-0000:00:03.0   2-edge      virtio0-output.0
 31:       1200         34   PCI-MSIX-0000:00:05.0   1-edge      eth2-rx-0
NMI:          0          0   Non-maskable interrupts
LOC:       9044       8811   Local timer interrupts
`

func TestParse(t *testing.T) {
	lines, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	require.Len(t, lines, 5)
	assert.Equal(t, Counted{IRQ: 25, Name: "virtio0-input.0", Total: 78}, lines[2])
}

func TestFind(t *testing.T) {
	lines, err := Parse(strings.NewReader(sample))
	require.NoError(t, err)
	tests := []struct {
		name    string
		irq     uint32
		hasIRQ  bool
		dev     string
		queue   int
		want    Line
		wantErr string
		noIRQ   bool
	}{
		{"napi-get irq", 31, true, "0000:00:05.0", 0, Line{IRQ: 31, Name: "eth2-rx-0", Source: "napi-get irq"}, "", false},
		{"virtio by name", 0, false, "virtio0", 0, Line{IRQ: 25, Name: "virtio0-input.0", Source: "/proc/interrupts line named for rx queue 0"}, "", false},
		{"virtio, unknown queue", 0, false, "virtio0", 3, Line{}, `no line "virtio0-input.3"`, true},
		{"veth", 0, false, "", 0, Line{}, "napi-get reports no irq for the NAPI and the interface has no bus device", true},
		{"irq without a line", 99, true, "", 0, Line{}, "reports irq 99, but /proc/interrupts has no such line", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := find(lines, tt.irq, tt.hasIRQ, tt.dev, tt.queue)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Equal(t, tt.noIRQ, errors.Is(err, ErrNoIRQ))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
