package hooks

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a Go duration string in the configuration ("3s", "24h"), as web_hook configs
// (timeout, retry.schedule) and the rest of the configuration file write them.
type Duration time.Duration

// UnmarshalJSON reads "1h30m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected a duration string like \"1h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration back as "1h0m0s", so a configuration round-trips.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
