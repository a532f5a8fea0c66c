package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/latchhq/latch/schemas"
)

// TracingConfig is Kratos' `tracing`: OpenTelemetry, exported over OTLP. Latch implements the
// otel provider only; Protocol is Latch's own key (Kratos exports over HTTP only).
type TracingConfig struct {
	Provider              string `json:"provider"`               // "" (off) | otel; jaeger and zipkin are refused
	ServiceName           string `json:"service_name"`           // unset: TracingServiceNameDefault
	DeploymentEnvironment string `json:"deployment_environment"` // unset: none
	Providers             struct {
		OTLP OTLPConfig `json:"otlp"`
	} `json:"providers"`
}

// OTLPConfig is `tracing.providers.otlp`.
type OTLPConfig struct {
	ServerURL string `json:"server_url"` // host:port, as Kratos writes it; required with provider otel
	Insecure  bool   `json:"insecure"`   // plain HTTP or gRPC without TLS
	Sampling  struct {
		SamplingRatio *float64 `json:"sampling_ratio"` // unset: 1, as Kratos
	} `json:"sampling"`
	AuthorizationHeader string `json:"authorization_header"`
	Protocol            string `json:"protocol"` // Latch's: http (default, as Kratos) | grpc
}

// Tracing values: the provider Latch implements, its transports, and the default service name.
const (
	TracingProviderOTel       = "otel"
	OTLPProtocolHTTP          = "http"
	OTLPProtocolGRPC          = "grpc"
	TracingServiceNameDefault = "Latch"
)

// Enabled reports whether the file turns tracing on.
func (t TracingConfig) Enabled() bool { return t.Provider == TracingProviderOTel }

// SamplingRatio is the share of new traces recorded: the file's, else 1.
func (o OTLPConfig) SamplingRatio() float64 {
	if o.Sampling.SamplingRatio == nil {
		return 1
	}
	return *o.Sampling.SamplingRatio
}

// check reports what is wrong with `tracing` (each problem naming its key), and warns when
// OTLP settings are given while tracing stays off.
func (t TracingConfig) check() (problems []schemas.ConfigProblem, warnings []string) {
	o := t.Providers.OTLP
	switch t.Provider {
	case "":
		if o.ServerURL != "" {
			warnings = append(warnings, "config key tracing.providers.otlp.server_url is set but tracing.provider is not \"otel\": tracing is off")
		}
		return nil, warnings
	case TracingProviderOTel:
	default:
		return []schemas.ConfigProblem{{Key: "tracing.provider", Message: fmt.Sprintf("%q is not supported by Latch: use \"otel\" (OTLP; an OpenTelemetry Collector can forward to Jaeger or Zipkin)", t.Provider)}}, nil
	}
	if o.ServerURL == "" {
		problems = append(problems, schemas.ConfigProblem{Key: "tracing.providers.otlp.server_url", Message: "is required when tracing.provider is \"otel\" (host:port of the OTLP receiver, e.g. localhost:4318)"})
	} else if msg := checkHostPort(o.ServerURL); msg != "" {
		problems = append(problems, schemas.ConfigProblem{Key: "tracing.providers.otlp.server_url", Message: msg})
	}
	if strings.ContainsAny(o.AuthorizationHeader, "\r\n\x00") {
		problems = append(problems, schemas.ConfigProblem{Key: "tracing.providers.otlp.authorization_header", Message: "must not contain control characters"})
	}
	return problems, warnings
}

// checkHostPort explains why s is not host:port ("" when it is). Kratos' server_url has no
// scheme; one given by mistake is named, as the exporter would otherwise fail at every export.
func checkHostPort(s string) string {
	if strings.Contains(s, "://") {
		return fmt.Sprintf("%q must be host:port without a scheme (Kratos' form; tracing.providers.otlp.insecure chooses plain HTTP)", s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Sprintf("%q is not host:port", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q has no valid port", s)
	}
	if strings.ContainsAny(host, "/?#@ \t\r\n\x00") {
		return fmt.Sprintf("%q is not host:port", s)
	}
	return ""
}
