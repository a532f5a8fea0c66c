// Package config is `latch`'s configuration file: its Go shape (Config, with Ory Kratos' key
// names where Kratos has the concept), loading (YAML files deep-merged, environment overrides
// in Kratos' style, validation against schemas/config.schema.json with errors that name the
// key, the semantic checks a schema cannot say) and live reload (Watch: a running process puts
// an edited file in force, or refuses it whole naming the key).
//
// It owns the defaults of the command's own keys only (listen addresses, base URLs, logging,
// the --dev conveniences). Every other unset key stays zero and takes the default of the
// package that owns the setting, so one place says each default. It does not build services:
// cmd/latch maps a Config onto the packages' configs and wires them.
package config
