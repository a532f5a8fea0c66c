package password

// Supports reports whether a hash is in a format Compare can check within its parameter bounds,
// so that an admin importing a hashed_password learns at once that it would never verify.
func (h *Hasher) Supports(hash []byte) bool {
	_, err := h.limits.parse(hash)
	return err == nil
}
