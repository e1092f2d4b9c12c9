package niclend

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestReturnAll: ReturnAll gives back what is registered and not forgotten,
// once, and refuses later registrations.
func TestReturnAll(t *testing.T) {
	var returned []string
	forgetA, ok := OnEmergency(func() error { returned = append(returned, "a"); return nil })
	assert.True(t, ok)
	_, ok = OnEmergency(func() error { returned = append(returned, "b"); return errors.New("b failed") })
	assert.True(t, ok)
	forgetA()
	ReturnAll("test")
	assert.Equal(t, []string{"b"}, returned, "only the port not given back yet, errors reported")
	ReturnAll("again")
	assert.Equal(t, []string{"b"}, returned, "once")
	_, ok = OnEmergency(func() error { return nil })
	assert.False(t, ok, "no new loan after the emergency")
}
