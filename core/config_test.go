package core

import (
	"testing"
	"time"

	"github.com/latchhq/latch/core/password"
)

// A zero field means its default, filled once by normalize; a set field is kept. Defaults are
// on for the switches: a zero Config registers, throttles and revokes on deactivation.
func TestConfigZeroMeansDefault(t *testing.T) {
	t.Parallel()
	c := Config{PublicBaseURL: "https://id.example/"}
	if err := c.normalize(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"PublicBaseURL", c.PublicBaseURL, "https://id.example"},
		{"DefaultSchemaID", c.DefaultSchemaID, SchemaIDDefault},
		{"Registration.Lifespan", c.Registration.Lifespan, FlowLifespanDefault},
		{"Login.Lifespan", c.Login.Lifespan, FlowLifespanDefault},
		{"Settings.Lifespan", c.Settings.Lifespan, FlowLifespanDefault},
		{"Settings.PrivilegedSessionMaxAge", c.Settings.PrivilegedSessionMaxAge, PrivilegedSessionMaxAgeDefault},
		{"PasswordPolicy.MinLength", c.PasswordPolicy.MinLength, password.MinLengthDefault},
		{"HookDeadline", c.HookDeadline, HookDeadlineDefault},
		{"Throttle.MaxFailures", c.Throttle.MaxFailures, ThrottleMaxFailuresDefault},
		{"Throttle.MaxAddressFailures", c.Throttle.MaxAddressFailures, ThrottleMaxAddressFailuresDefault},
		{"Throttle.Window", c.Throttle.Window, ThrottleWindowDefault},
		{"Throttle.Lockout", c.Throttle.Lockout, ThrottleLockoutDefault},
		{"Registration.Disabled", c.Registration.Disabled, false},
		{"Throttle.Disabled", c.Throttle.Disabled, false},
		{"Session.KeepSessionsOnDeactivate", c.Session.KeepSessionsOnDeactivate, false},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	set := Config{PublicBaseURL: "https://id.example", DefaultSchemaID: "customer", HookDeadline: time.Second,
		Throttle: ThrottleConfig{MaxFailures: 3, Window: time.Minute}}
	set.Login.Lifespan = 5 * time.Minute
	if err := set.normalize(); err != nil {
		t.Fatal(err)
	}
	if set.DefaultSchemaID != "customer" || set.HookDeadline != time.Second || set.Throttle.MaxFailures != 3 ||
		set.Throttle.Window != time.Minute || set.Login.Lifespan != 5*time.Minute || set.Throttle.Lockout != ThrottleLockoutDefault {
		t.Errorf("set fields changed: %+v", set)
	}
	// Negative values are no setting either: they take the default rather than break a flow.
	neg := Config{PublicBaseURL: "https://id.example", HookDeadline: -time.Second, Throttle: ThrottleConfig{MaxFailures: -1}}
	if err := neg.normalize(); err != nil {
		t.Fatal(err)
	}
	if neg.HookDeadline != HookDeadlineDefault || neg.Throttle.MaxFailures != ThrottleMaxFailuresDefault {
		t.Errorf("negative values: %+v", neg)
	}
	if err := (&Config{PublicBaseURL: "/"}).normalize(); err == nil {
		t.Error("a config without a public base URL was accepted")
	}
}
