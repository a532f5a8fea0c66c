package webhooks

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/latchhq/latch/core/dbtest"
)

// Every page of the delivery log, on ten thousand deliveries, is read through an index, whatever
// the filter the admin API and the console offer; walking the pages yields every delivery once.
func TestDeliveryPagesUseIndexes(t *testing.T) {
	db := dbtest.New(t)
	ctx := context.Background()
	identity := uuid.New()
	for _, q := range []string{
		`INSERT INTO webhook_deliveries (id, event_id, hook_id, event_type, identity_id, url, body, content_type, state,
				event_time, created_at)
			SELECT gen_random_uuid(), gen_random_uuid(), 'hook-' || (g % 5), 'identity.created',
				CASE WHEN g % 100 = 0 THEN '` + identity.String() + `'::uuid END, 'http://receiver.test/', '{}',
				'application/json', (ARRAY['pending', 'succeeded', 'dead'])[g % 3 + 1], now(), now() - g * interval '1 second'
			FROM generate_series(1, 10000) g`,
		`ANALYZE webhook_deliveries`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	after := &DeliveryCursor{CreatedAt: time.Now().Add(-time.Hour), ID: uuid.Max}
	for name, c := range map[string]struct {
		f     DeliveryFilter
		after *DeliveryCursor
	}{
		"all":            {DeliveryFilter{}, nil},
		"all after":      {DeliveryFilter{}, after},
		"dead after":     {DeliveryFilter{State: StateDead}, after},
		"hook after":     {DeliveryFilter{HookID: "hook-3"}, after},
		"hook and state": {DeliveryFilter{HookID: "hook-3", State: StateDead}, after},
		"identity":       {DeliveryFilter{IdentityID: &identity}, after},
	} {
		q, args := listSQL(c.f, 50, c.after)
		rows, err := db.Query(ctx, "EXPLAIN "+q, args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var l string
			_ = rows.Scan(&l)
			plan = append(plan, l)
		}
		rows.Close()
		text := strings.Join(plan, "\n")
		if strings.Contains(text, "Seq Scan") || !strings.Contains(text, "Index") {
			t.Errorf("%s: the page is not read through an index:\n%s", name, text)
		}
	}

	s := NewStore(db)
	for _, f := range []DeliveryFilter{{}, {State: StateDead}} {
		seen := map[uuid.UUID]bool{}
		var cur *DeliveryCursor
		for {
			list, next, err := s.List(ctx, f, 50, cur)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range list {
				if seen[d.ID] || (f.State != "" && d.State != f.State) {
					t.Fatalf("filter %+v: %s listed twice or in the wrong state", f, d.ID)
				}
				seen[d.ID] = true
			}
			if next == nil {
				break
			}
			cur = next
		}
		want := 10000
		if f.State == StateDead {
			want = 3333 // g % 3 == 2 for g in 1..10000
		}
		if len(seen) != want {
			t.Errorf("filter %+v: walked %d deliveries, want %d", f, len(seen), want)
		}
	}
}
