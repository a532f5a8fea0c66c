package config

import (
	"slices"
	"strings"
	"testing"
)

// Kratos' tracing keys load from the file and the environment; Latch's protocol key too.
func TestTracingKeys(t *testing.T) {
	t.Parallel()
	cfg, warnings := mustLoad(t, false, []string{"TRACING_PROVIDERS_OTLP_SAMPLING_SAMPLING_RATIO=0.25",
		"TRACING_PROVIDERS_OTLP_PROTOCOL=grpc"}, minimal+`
tracing:
  provider: otel
  service_name: identity
  deployment_environment: staging
  providers:
    otlp:
      server_url: collector.example:4317
      insecure: true
      authorization_header: Bearer abc
    jaeger: {local_agent_address: "127.0.0.1:6831"}
`)
	tr := cfg.Tracing
	o := tr.Providers.OTLP
	if !tr.Enabled() || tr.ServiceName != "identity" || tr.DeploymentEnvironment != "staging" || o.ServerURL != "collector.example:4317" ||
		!o.Insecure || o.AuthorizationHeader != "Bearer abc" || o.Protocol != OTLPProtocolGRPC || o.SamplingRatio() != 0.25 {
		t.Errorf("tracing = %+v", tr)
	}
	if !slices.Contains(warnings, "config key tracing.providers.jaeger is not used by Latch") {
		t.Errorf("no warning for tracing.providers.jaeger in %q", warnings)
	}

	off, _ := mustLoad(t, false, nil, minimal)
	if off.Tracing.Enabled() || off.Tracing.Providers.OTLP.SamplingRatio() != 1 {
		t.Errorf("no tracing key: enabled %v, ratio %v; want off and Kratos' default ratio 1",
			off.Tracing.Enabled(), off.Tracing.Providers.OTLP.SamplingRatio())
	}
	_, warnings = mustLoad(t, false, nil, minimal+"tracing: {providers: {otlp: {server_url: \"c:4318\"}}}\n")
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "tracing.provider is not \"otel\"") }) {
		t.Errorf("server_url without provider: no warning in %q", warnings)
	}
}

// An unsupported or half-configured tracer is a configuration error naming the key, never
// silently ignored.
func TestTracingErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	otel := func(otlp string) string {
		return minimal + "tracing: {provider: otel, providers: {otlp: " + otlp + "}}\n"
	}
	tests := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"jaeger", minimal + "tracing: {provider: jaeger, providers: {jaeger: {local_agent_address: \"a:6831\"}}}\n", nil,
			`config: tracing.provider: "jaeger" is not supported by Latch: use "otel"`},
		{"zipkin from the environment", minimal, []string{"TRACING_PROVIDER=zipkin"},
			`config: tracing.provider: "zipkin" is not supported by Latch`},
		{"unknown provider", minimal + "tracing: {provider: datadog}\n", nil, "config: tracing.provider:"},
		{"no server_url", minimal + "tracing: {provider: otel}\n", nil,
			`config: tracing.providers.otlp.server_url: is required when tracing.provider is "otel"`},
		{"a URL, not host:port", otel(`{server_url: "http://collector:4318"}`), nil,
			"config: tracing.providers.otlp.server_url: \"http://collector:4318\" must be host:port without a scheme"},
		{"no port", otel(`{server_url: "collector"}`), nil, `config: tracing.providers.otlp.server_url: "collector" is not host:port`},
		{"port out of range", otel(`{server_url: "collector:99999"}`), nil, "config: tracing.providers.otlp.server_url: \"collector:99999\" has no valid port"},
		{"ratio above 1", otel(`{server_url: "c:4318", sampling: {sampling_ratio: 1.5}}`), nil,
			"config: tracing.providers.otlp.sampling.sampling_ratio: must be a number between 0 and 1"},
		{"negative ratio from the environment", otel(`{server_url: "c:4318"}`), []string{"TRACING_PROVIDERS_OTLP_SAMPLING_SAMPLING_RATIO=-1"},
			"config: tracing.providers.otlp.sampling.sampling_ratio: must be a number between 0 and 1"},
		{"not-a-number ratio", otel(`{server_url: "c:4318", sampling: {sampling_ratio: .nan}}`), nil,
			"config: tracing.providers.otlp.sampling.sampling_ratio:"},
		{"IPv6 without brackets", otel(`{server_url: "::1:4318"}`), nil, `config: tracing.providers.otlp.server_url: "::1:4318" is not host:port`},
		{"a path", otel(`{server_url: "c:4318/v1/traces"}`), nil, "config: tracing.providers.otlp.server_url:"},
		{"unknown protocol", otel(`{server_url: "c:4318", protocol: thrift}`), nil, "config: tracing.providers.otlp.protocol:"},
		{"header injection", otel(`{server_url: "c:4318", authorization_header: "Bearer a\r\nX-Evil: 1"}`), nil,
			"config: tracing.providers.otlp.authorization_header: must not contain control characters"},
		{"unknown key", otel(`{server_url: "c:4318", endpoint: "x"}`), nil, "config: tracing.providers.otlp.endpoint: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := load(t, false, tt.env, tt.file)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckHostPortAcceptsKratosForms(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"localhost:4318", "127.0.0.1:4317", "[::1]:4318", "otel-collector.observability.svc:4318"} {
		if msg := checkHostPort(s); msg != "" {
			t.Errorf("checkHostPort(%q) = %q, want accepted", s, msg)
		}
	}
}
