package main

import (
	"fmt"
	"os"
	"strings"
)

// signingSecret signs both hooks (webhooks.signing_secrets; Standard Webhooks' test vector).
const signingSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

const (
	hookID     = "crm"   // the flow web_hook on registration
	endpointID = "audit" // the endpoint subscribed to identity.*
)

// writeConfig writes the configuration of one process: every process shares it but for the
// serve ports.
func writeConfig(path, dsn, natsURL string, publicPort, adminPort int, hookURL, endpointURL string) error {
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	// The flow hook retries every second for half a minute, so that a flapping receiver, a
	// restarted Postgres or a killed worker costs seconds; the endpoint keeps the default
	// schedule (0, 5 s, 5 min, ...), which the flaps are kept short for.
	sched := `"0s"` + strings.Repeat(`, "1s"`, 30)
	cfg := fmt.Sprintf(`# bench/chaos: one Postgres, a three-node NATS cluster, N serves and M workers.
dsn: %s
serve:
  public: {host: 127.0.0.1, port: %d, base_url: "http://127.0.0.1:%d/"}
  admin:  {host: 127.0.0.1, port: %d, base_url: "http://127.0.0.1:%d/"}
hashers: {algorithm: bcrypt, bcrypt: {cost: 4}}
secrets: {cookie: ["a-very-long-chaos-cookie-secret-000"]}
nats: {url: %s}
events:
  stream: {replicas: 3}
webhooks:
  signing_secrets: [%s]
  worker: {shutdown_timeout: 5s}
  endpoints:
    - id: %s
      url: %s
      event_types: ["identity.*"]
      timeout: 5s
selfservice:
  flows:
    registration:
      after:
        password:
          hooks:
            - hook: session
            - hook: web_hook
              config:
                id: %s
                url: %s
                method: POST
                timeout: 5s
                retry: {schedule: [%s]}
`, q(dsn), publicPort, publicPort, adminPort, adminPort, q(natsURL), q(signingSecret),
		endpointID, q(endpointURL), hookID, q(hookURL), sched)
	return os.WriteFile(path, []byte(cfg), 0o600)
}
