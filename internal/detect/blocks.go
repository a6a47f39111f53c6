package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Block keeps a source out until it expires or is lifted. The gateway
// checks blocks on every request against a local snapshot (no I/O); with
// Redis the snapshot follows every node's blocks within a poll interval.
type Block struct {
	Kind   string    `json:"kind"` // ip | identity | api_key
	Key    string    `json:"key"`
	Until  time.Time `json:"until"`
	Rule   string    `json:"rule"`
	Reason string    `json:"reason"`
	Node   string    `json:"node"`
	At     time.Time `json:"at"`
}

func (b Block) field() string { return b.Kind + "|" + b.Key }

// Risk is a caller's raised risk (a step_up response), which policy reads
// as risk.level and risk.alerts.
type Risk struct {
	Level  string   `json:"level"`
	Alerts []string `json:"alerts"`
	Until  time.Time
}

// State holds blocks and raised risk. Safe for concurrent use.
type State struct {
	snap   atomic.Pointer[snapshot]
	mu     sync.Mutex // serialises changes
	local  map[string]Block
	risks  map[string]Risk
	rdb    redis.UniversalClient // nil: this node only
	prefix string
	logger *slog.Logger
	now    func() time.Time
}

type snapshot struct {
	blocks map[string]Block
	risks  map[string]Risk
}

// NewLocalState keeps blocks in this node's memory.
func NewLocalState() *State {
	s := &State{local: map[string]Block{}, risks: map[string]Risk{}, now: time.Now, logger: slog.Default()}
	s.publish()
	return s
}

// NewRedisState shares blocks and risk between nodes through Redis (a hash
// per kind of state under prefix); Run keeps the local snapshot current.
func NewRedisState(rdb redis.UniversalClient, prefix string, logger *slog.Logger) *State {
	s := NewLocalState()
	s.rdb, s.prefix, s.logger = rdb, prefix, logger
	return s
}

func (s *State) publish() {
	b := make(map[string]Block, len(s.local))
	for k, v := range s.local {
		b[k] = v
	}
	r := make(map[string]Risk, len(s.risks))
	for k, v := range s.risks {
		r[k] = v
	}
	s.snap.Store(&snapshot{blocks: b, risks: r})
}

// Blocked returns the block on kind/key in force, if any. A nil State
// blocks nothing.
func (s *State) Blocked(kind, key string) (Block, bool) {
	if s == nil || key == "" {
		return Block{}, false
	}
	b, ok := s.snap.Load().blocks[kind+"|"+key]
	if !ok || !s.now().Before(b.Until) {
		return Block{}, false
	}
	return b, true
}

// RiskOf returns the raised risk of an identity ("" level when none).
func (s *State) RiskOf(identity string) Risk {
	if s == nil || identity == "" {
		return Risk{}
	}
	r, ok := s.snap.Load().risks[identity]
	if !ok || !s.now().Before(r.Until) {
		return Risk{}
	}
	return r
}

// Add blocks a source (replacing a shorter block on it).
func (s *State) Add(ctx context.Context, b Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.local[b.field()]; ok && old.Until.After(b.Until) {
		return nil
	}
	if s.rdb != nil {
		v, _ := json.Marshal(b)
		if err := s.rdb.HSet(ctx, s.prefix+"blocks", b.field(), v).Err(); err != nil {
			return fmt.Errorf("state: block not shared: %w", err)
		}
	}
	s.local[b.field()] = b
	s.publish()
	return nil
}

// Lift removes a block; it reports whether there was one in force.
func (s *State) Lift(ctx context.Context, kind, key string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := kind + "|" + key
	b, had := s.local[f]
	had = had && s.now().Before(b.Until)
	if s.rdb != nil {
		n, err := s.rdb.HDel(ctx, s.prefix+"blocks", f).Result()
		if err != nil {
			return false, fmt.Errorf("state: lift not shared: %w", err)
		}
		had = had || n > 0
	}
	delete(s.local, f)
	s.publish()
	return had, nil
}

// StepUp raises an identity's risk until the given time.
func (s *State) StepUp(ctx context.Context, identity, rule string, until time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.risks[identity]
	if !s.now().Before(r.Until) {
		r = Risk{}
	}
	r.Level = "high"
	if !contains(r.Alerts, rule) {
		r.Alerts = append(append([]string(nil), r.Alerts...), rule)
	}
	if until.After(r.Until) {
		r.Until = until
	}
	if s.rdb != nil {
		v, _ := json.Marshal(struct {
			Risk
			Until time.Time `json:"until"`
		}{r, r.Until})
		if err := s.rdb.HSet(ctx, s.prefix+"risk", identity, v).Err(); err != nil {
			return fmt.Errorf("state: risk not shared: %w", err)
		}
	}
	s.risks[identity] = r
	s.publish()
	return nil
}

// List returns the blocks in force, soonest to expire first.
func (s *State) List() []Block {
	now := s.now()
	var out []Block
	for _, b := range s.snap.Load().blocks {
		if now.Before(b.Until) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Until.Equal(out[j].Until) {
			return out[i].Until.Before(out[j].Until)
		}
		return out[i].field() < out[j].field()
	})
	return out
}

// Run follows the shared state every interval until ctx ends (Redis only),
// and forgets what has expired.
func (s *State) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.sync(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("blocks not refreshed from the shared state; the last known ones stay in force", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *State) sync(ctx context.Context) error {
	now := s.now()
	var blocks, risks map[string]string
	if s.rdb != nil {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		if blocks, err = s.rdb.HGetAll(c, s.prefix+"blocks").Result(); err != nil {
			return err
		}
		if risks, err = s.rdb.HGetAll(c, s.prefix+"risk").Result(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb != nil {
		next := map[string]Block{}
		var expired []string
		for f, v := range blocks {
			var b Block
			if json.Unmarshal([]byte(v), &b) != nil {
				continue
			}
			if !now.Before(b.Until) {
				expired = append(expired, f)
				continue
			}
			next[f] = b
		}
		s.local = next
		nextRisk := map[string]Risk{}
		var expiredRisk []string
		for id, v := range risks {
			var r struct {
				Risk
				Until time.Time `json:"until"`
			}
			if json.Unmarshal([]byte(v), &r) != nil {
				continue
			}
			r.Risk.Until = r.Until
			if !now.Before(r.Until) {
				expiredRisk = append(expiredRisk, id)
				continue
			}
			nextRisk[id] = r.Risk
		}
		s.risks = nextRisk
		if len(expired) > 0 {
			s.rdb.HDel(ctx, s.prefix+"blocks", expired...)
		}
		if len(expiredRisk) > 0 {
			s.rdb.HDel(ctx, s.prefix+"risk", expiredRisk...)
		}
	} else {
		for f, b := range s.local {
			if !now.Before(b.Until) {
				delete(s.local, f)
			}
		}
		for id, r := range s.risks {
			if !now.Before(r.Until) {
				delete(s.risks, id)
			}
		}
	}
	s.publish()
	return nil
}

// Active reports whether any block or raised risk is held (nil: none), so
// the request path can skip building lookup keys.
func (s *State) Active() bool {
	if s == nil {
		return false
	}
	sn := s.snap.Load()
	return len(sn.blocks) > 0 || len(sn.risks) > 0
}

// BlockedIP is Blocked for an address; it costs nothing without blocks.
func (s *State) BlockedIP(ip netip.Addr) (Block, bool) {
	if s == nil || !ip.IsValid() || len(s.snap.Load().blocks) == 0 {
		return Block{}, false
	}
	return s.Blocked("ip", ip.String())
}
