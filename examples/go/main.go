// The Asynq-style app worker on aijob with redigo: schedules, a client that enqueues tasks,
// and a worker that claims and finishes its own jobs.
//
// Before (the seed): an Asynq scheduler process enqueues stripe:reconcile every 15m and
// cleanup:expired every 1h (two schedulers enqueue twice; none enqueues nothing), and pollers
// run every 5s to find the next AI job.
//
// After: the schedules live in Redis and the module's timer fires each run exactly once; the
// worker blocks in JOB.CLAIM (no polling), holds a lease it extends while it works, and ends
// each job with JOB.UPDATE and its fencing token. A worker that dies loses nothing: its lease
// expires and the job is claimed again.
//
// Run against `make run`:
//
//	cd examples/go && GO111MODULE=off GOPATH=/usr/share/gocode go run . -demo
//
// -demo enqueues a few tasks and a fast schedule, and exits once they are done. Each step
// prints one JSON line.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

// One queue; Asynq's critical/default/low queues become the job's priority.
var queue = flag.String("queue", "mirai", "the aijob queue")

// Task is what a job's payload holds.
type Task struct {
	Type      string `json:"task"`
	CourseID  int    `json:"course_id,omitempty"`
	Account   string `json:"account,omitempty"`
	FailFirst bool   `json:"fail_first,omitempty"`
}

// A handler does the work of one task type; attempt counts from 1.
type handler func(t Task, attempt int) (interface{}, error)

var handlers = map[string]handler{
	"ai:generation": func(t Task, _ int) (interface{}, error) {
		time.Sleep(100 * time.Millisecond) // the AI call; use the fetcher for real providers
		return map[string]interface{}{"course_id": t.CourseID, "outline": []string{"Intro", "Basics", "Practice"}}, nil
	},
	"stripe:provision": func(t Task, attempt int) (interface{}, error) {
		if t.FailFirst && attempt == 1 {
			return nil, errors.New("stripe: connection reset") // retried by the module with backoff
		}
		return map[string]interface{}{"account": t.Account, "provisioned": true}, nil
	},
	"stripe:reconcile": func(Task, int) (interface{}, error) { return map[string]int{"orphans": 0}, nil },
	"cleanup:expired":  func(Task, int) (interface{}, error) { return map[string]int{"removed": 0}, nil },
}

func emit(fields map[string]interface{}) {
	b, _ := json.Marshal(fields)
	fmt.Println(string(b))
}

// record turns a map reply (RESP2: a flat field/value array) into strings.
func record(v interface{}) (map[string]string, error) {
	flat, err := redis.Values(v, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := redis.String(flat[i], nil)
		switch x := flat[i+1].(type) {
		case []byte:
			out[k] = string(x)
		case int64:
			out[k] = strconv.FormatInt(x, 10)
		}
	}
	return out, nil
}

// schedule registers the periodic tasks (Asynq's scheduler.Register), idempotently.
func schedule(c redis.Conn, cleanupEvery time.Duration) error {
	type entry struct{ name, when, spec, priority string }
	for _, e := range []entry{
		{"stripe:reconcile", "CRON", "*/15 * * * *", "high"},
		{"cleanup:expired", "EVERY", strconv.FormatInt(cleanupEvery.Milliseconds(), 10), "low"},
	} {
		payload, _ := json.Marshal(Task{Type: e.name})
		next, err := redis.Int64(c.Do("SCHEDULE.SET", *queue, e.name, e.when, e.spec, "PAYLOAD", payload, "PRIORITY", e.priority))
		if err != nil {
			return err
		}
		emit(map[string]interface{}{"step": "schedule", "name": e.name, e.when: e.spec, "next_run_at": next})
	}
	return nil
}

// enqueue is Asynq's client.Enqueue: JOB.CREATE with the task as payload.
func enqueue(c redis.Conn, t Task, priority string, maxAttempts int) (string, error) {
	payload, _ := json.Marshal(t)
	id, err := redis.String(c.Do("JOB.CREATE", *queue, "PAYLOAD", payload, "PRIORITY", priority, "MAXATTEMPTS", maxAttempts))
	if err == nil {
		emit(map[string]interface{}{"step": "enqueue", "task": t.Type, "id": id, "priority": priority})
	}
	return id, err
}

type worker struct {
	pool  *redis.Pool
	name  string
	lease time.Duration
	done  chan map[string]string // every finished job, for -demo
}

// run claims one job at a time until stop is closed.
func (w *worker) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c := w.pool.Get()
		reply, err := c.Do("JOB.CLAIM", *queue, "WORKER", w.name, "LEASE", w.lease.Milliseconds(), "BLOCK", 1000)
		c.Close()
		if err != nil {
			emit(map[string]interface{}{"step": "claim-error", "error": err.Error()})
			time.Sleep(time.Second)
			continue
		}
		jobs, _ := redis.Values(reply, nil) // nil when BLOCK timed out
		for _, j := range jobs {
			if job, err := record(j); err == nil {
				w.handle(job)
			}
		}
	}
}

// handle runs one claimed job: heartbeats while the handler works, then done or error.
func (w *worker) handle(job map[string]string) {
	id, token := job["id"], job["token"]
	attempt, _ := strconv.Atoi(job["attempts"])
	var t Task
	if err := json.Unmarshal([]byte(job["payload"]), &t); err != nil || handlers[t.Type] == nil {
		w.finish(job, "error", "ERROR", "no handler for this payload", "NORETRY")
		return
	}

	stopBeat := make(chan struct{})
	var beats sync.WaitGroup
	beats.Add(1)
	go func() { // the heartbeat: JOB.UPDATE with the token extends the lease
		defer beats.Done()
		tick := time.NewTicker(w.lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-stopBeat:
				return
			case <-tick.C:
				c := w.pool.Get()
				c.Do("JOB.UPDATE", *queue, id, "TOKEN", token, "PROGRESS", "working")
				c.Close()
			}
		}
	}()
	result, err := handlers[t.Type](t, attempt)
	close(stopBeat)
	beats.Wait()

	if err != nil {
		w.finish(job, "error", "ERROR", err.Error(), "CLASS", "transient")
		return
	}
	out, _ := json.Marshal(result)
	w.finish(job, "done", "RESULT", string(out))
}

func (w *worker) finish(job map[string]string, status string, extra ...string) {
	args := redis.Args{*queue, job["id"], "TOKEN", job["token"], "STATUS", status}.AddFlat(extra)
	c := w.pool.Get()
	defer c.Close()
	now, err := redis.String(c.Do("JOB.UPDATE", args...))
	if err != nil {
		// LEASELOST or CANCELED: someone else owns the job now, or nobody wants it. Drop it.
		emit(map[string]interface{}{"step": "dropped", "id": job["id"], "error": err.Error()})
		return
	}
	emit(map[string]interface{}{"step": "handled", "id": job["id"], "task": taskType(job), "attempt": job["attempts"],
		"schedule": job["schedule"], "outcome": status, "now": now})
	if now == "done" && w.done != nil {
		w.done <- job
	}
}

func taskType(job map[string]string) string {
	var t Task
	json.Unmarshal([]byte(job["payload"]), &t)
	return t.Type
}

func main() {
	url := flag.String("url", envOr("REDIS_URL", "redis://127.0.0.1:6379"), "Redis with the aijob module")
	concurrency := flag.Int("concurrency", 3, "jobs worked on at once")
	demo := flag.Bool("demo", false, "enqueue a few tasks and a fast schedule; exit when they are done")
	timeout := flag.Duration("timeout", 60*time.Second, "with -demo: give up after this long")
	flag.Parse()

	pool := &redis.Pool{
		MaxIdle: *concurrency + 2,
		Dial:    func() (redis.Conn, error) { return redis.DialURL(*url) },
	}
	defer pool.Close()
	c := pool.Get()
	cleanupEvery := time.Hour
	if *demo {
		cleanupEvery = 500 * time.Millisecond
	}
	if err := schedule(c, cleanupEvery); err != nil {
		fail(err)
	}

	var want map[string]bool
	if *demo {
		want = map[string]bool{}
		for _, e := range []struct {
			t        Task
			priority string
		}{
			{Task{Type: "stripe:provision", Account: "acct_42", FailFirst: true}, "high"},
			{Task{Type: "ai:generation", CourseID: 1}, "normal"},
			{Task{Type: "ai:generation", CourseID: 2}, "normal"},
		} {
			id, err := enqueue(c, e.t, e.priority, 3)
			if err != nil {
				fail(err)
			}
			want[id] = true
		}
	}
	c.Close()

	w := &worker{pool: pool, name: fmt.Sprintf("go-%d", os.Getpid()), lease: 15 * time.Second}
	if *demo {
		w.done = make(chan map[string]string, 64)
	}
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		workers.Add(1)
		go func() { defer workers.Done(); w.run(stop) }()
	}
	if !*demo {
		workers.Wait() // a real worker runs until it is stopped
		return
	}

	scheduled := false
	deadline := time.After(*timeout)
	for len(want) > 0 || !scheduled {
		select {
		case job := <-w.done:
			delete(want, job["id"])
			if job["schedule"] == "cleanup:expired" {
				scheduled = true
			}
		case <-deadline:
			fail(fmt.Errorf("timed out with %d enqueued jobs left, scheduled run done: %v", len(want), scheduled))
		}
	}
	close(stop)
	workers.Wait()
	// The fast demo schedule goes back to the seed's hourly one.
	c = pool.Get()
	defer c.Close()
	if err := schedule(c, time.Hour); err != nil {
		fail(err)
	}
	emit(map[string]interface{}{"step": "finished"})
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func fail(err error) {
	emit(map[string]interface{}{"step": "failed", "error": err.Error()})
	os.Exit(1)
}
