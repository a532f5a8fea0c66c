// Command receiver is the OpenTelemetry Collector's own OTLP receiver (otlpreceiver) run on its
// own: it accepts OTLP over HTTP and over gRPC and appends each batch of spans it receives to a
// file, one OTLP/JSON document per line, before answering the exporter. tests/otlp builds it and
// runs it as the real receiver a `latch serve` process exports to.
//
// It is a module of its own, so that the Collector's dependencies stay out of Latch's go.mod.
//
//	receiver -http 127.0.0.1:4318 -grpc 127.0.0.1:4317 -out spans.jsonl
//
// It prints "ready" once both listeners are up, and stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

func run() error {
	httpAddr := flag.String("http", "127.0.0.1:4318", "OTLP/HTTP listen `address`")
	grpcAddr := flag.String("grpc", "127.0.0.1:4317", "OTLP/gRPC listen `address`")
	out := flag.String("out", "spans.jsonl", "`file` the spans are appended to, one OTLP/JSON document per line")
	flag.Parse()

	f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	var mu sync.Mutex
	marshaler := &ptrace.JSONMarshaler{}
	sink, err := consumer.NewTraces(func(_ context.Context, td ptrace.Traces) error {
		b, err := marshaler.MarshalTraces(td)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if _, err := f.Write(append(b, '\n')); err != nil {
			return err
		}
		return f.Sync() // written before the exporter hears back
	})
	if err != nil {
		return err
	}

	factory := otlpreceiver.NewFactory()
	cfg := factory.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.GRPC.GetOrInsertDefault().NetAddr.Endpoint = *grpcAddr
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = *httpAddr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := factory.CreateTraces(ctx, receivertest.NewNopSettings(factory.Type()), cfg, sink)
	if err != nil {
		return err
	}
	if err := r.Start(ctx, componenttest.NewNopHost()); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	return r.Shutdown(context.Background())
}
