package napitrace

// Reopen undoes CloseAll's refusal of new sessions, for tests.
func Reopen() {
	live.Lock()
	defer live.Unlock()
	live.closed = false
}
