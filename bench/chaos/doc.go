// Command chaos runs several `latch serve` and `latch worker` processes on its own Postgres
// and a three-node NATS JetStream cluster (in this process, stream replicas 3) under a steady
// load of native registrations, while a fault schedule drawn from -seed SIGKILLs and restarts
// serves and workers, restarts NATS nodes and Postgres, and makes a webhook receiver answer
// 503 for a while. At the end it checks, from Postgres and its two signature-verifying
// receivers (a flow web_hook and an endpoint on identity.*), that every committed
// identity.created arrived at least once at both, that no registration is half stored, and
// reports duplicates per webhook-id, the longest delivery stall and the delivery delay. It
// exits 1 when a check fails. docs/CHAOS.md records runs.
//
//	go run ./bench/chaos -d 3m -serves 2 -workers 2 -rate 20 -seed 7 [-json] [-keep]
//
// It owns only its temporary directory (Postgres data, NATS stores, process logs), removed at
// the end unless -keep; it never touches the shared Postgres or any other server.
package main
