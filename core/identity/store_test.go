package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/latchhq/latch/core/dbtest"
)

// seedIdentities inserts n identities (every hundredth inactive) with a password identifier
// each, user<k>@example.com, created a second apart, and refreshes the planner's statistics.
func seedIdentities(t testing.TB, db *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO identities (id, schema_id, state, traits, created_at, updated_at)
			SELECT gen_random_uuid(), 'default', CASE WHEN g % 100 = 0 THEN 'inactive' ELSE 'active' END,
				jsonb_build_object('email', 'user' || g || '@example.com'), now() - g * interval '1 second', now()
			FROM generate_series(1, $1::int) g`,
		`INSERT INTO identity_credentials (id, identity_id, type, config) SELECT gen_random_uuid(), id, 'password', '{}' FROM identities`,
		`INSERT INTO identity_credential_identifiers (type, identifier, identity_id, credential_id)
			SELECT 'password', i.traits->>'email', i.id, c.id FROM identities i JOIN identity_credentials c ON c.identity_id = i.id`,
		`ANALYZE`,
	} {
		var args []any
		if strings.Contains(q, "$1") {
			args = append(args, n)
		}
		if _, err := db.Exec(ctx, q, args...); err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
}

// explain returns the plan of q.
func explain(t testing.TB, db *pgxpool.Pool, q string, args ...any) string {
	t.Helper()
	rows, err := db.Query(context.Background(), "EXPLAIN "+q, args...)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// Every page of an operator's search, on ten thousand identities, is read through an index:
// newest first, by state (inactive ones through their partial index), by identifier, after a
// keyset position. Walking the pages yields every identity exactly once.
func TestListPagesUseIndexes(t *testing.T) {
	db := dbtest.New(t)
	seedIdentities(t, db, 10000)
	s := NewStore("http://public.test")
	ctx := context.Background()

	after := &Cursor{CreatedAt: time.Now().Add(-time.Hour), ID: [16]byte{0xff}}
	for name, p := range map[string]ListParams{
		"newest":               {PageSize: 50, Newest: true},
		"newest after":         {PageSize: 50, Newest: true, After: after},
		"oldest after":         {PageSize: 50, After: after},
		"inactive":             {PageSize: 50, Newest: true, State: StateInactive},
		"inactive after":       {PageSize: 50, Newest: true, State: StateInactive, After: after},
		"active after":         {PageSize: 50, Newest: true, State: StateActive, After: after},
		"identifier":           {PageSize: 50, Newest: true, Identifier: "user77@example.com"},
		"identifier and state": {PageSize: 50, Newest: true, Identifier: "user100@example.com", State: StateInactive},
	} {
		q, args := listSQL(p)
		plan := explain(t, db, q, args...)
		if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "Index") {
			t.Errorf("%s: the page is not read through an index:\n%s", name, plan)
		}
		if p.State == StateInactive && p.Identifier == "" && !strings.Contains(plan, "identities_inactive_created_idx") {
			t.Errorf("%s: inactive identities are not read through their partial index:\n%s", name, plan)
		}
	}

	for _, state := range []State{"", StateInactive} {
		seen := map[[16]byte]bool{}
		p := ListParams{PageSize: 50, Newest: true, State: state}
		var last time.Time
		for pages := 0; ; pages++ {
			list, next, err := s.List(ctx, db, p)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range list {
				if seen[i.ID] {
					t.Fatalf("state %q: %s listed twice", state, i.ID)
				}
				if !last.IsZero() && i.CreatedAt.After(last) {
					t.Fatalf("state %q: not newest first", state)
				}
				if state != "" && i.State != state {
					t.Fatalf("state %q: listed a %s identity", state, i.State)
				}
				seen[i.ID], last = true, i.CreatedAt
			}
			if next == nil {
				break
			}
			p.After = next
		}
		want := 10000
		if state == StateInactive {
			want = 100
		}
		if len(seen) != want {
			t.Errorf("state %q: walked %d identities, want %d", state, len(seen), want)
		}
	}

	list, _, err := s.List(ctx, db, ListParams{PageSize: 50, Identifier: "user77@example.com"})
	if err != nil || len(list) != 1 || !strings.Contains(string(list[0].Traits), "user77@example.com") {
		t.Fatalf("identifier search = %d identities, %v", len(list), err)
	}
}
