// tailstate.go holds the methods of what the tail goroutine owns: the cached entries
// and the parked polls. They run only on that goroutine.

package main

// tailState is what tail.run owns.
type tailState struct {
	cfg     config
	epoch   string                  // the epoch the cache belongs to
	first   uint64                  // the sequence of cache[0]; first = last+1 when empty
	cache   []entry                 // entries first..last, at most cfg.backlog of them
	parked  map[string]*pollRequest // by client id: at most one parked poll per client here
	recheck chan<- struct{}         // asks the reader to compare epochs now
}

// last is the highest sequence this node has read.
func (s *tailState) last() uint64 { return s.first + uint64(len(s.cache)) - 1 }

// load replaces the cache with a fresh snapshot. Polls parked under another epoch
// belong to records Redis has lost: they hear so now. The others may now be
// answerable, since the snapshot can reach further than the cache did.
func (s *tailState) load(snap snapshot) {
	if s.epoch != "" && snap.epoch != s.epoch {
		for id, req := range s.parked {
			req.reply <- batch{err: goneError{whyLost}}
			delete(s.parked, id)
		}
	}
	s.epoch = snap.epoch
	s.first, s.cache = snap.next-uint64(len(snap.entries)), snap.entries
	s.wake()
}

// poll answers at once if the client has anything to read here, or parks it until
// the stream grows. A parked poll of the same client that it replaces answers empty.
func (s *tailState) poll(req *pollRequest) {
	if req.c.known && (req.c.epoch != s.epoch || req.from() > s.last()+1) {
		req.reply <- batch{err: errRecheck} // the copy cannot vouch for this cursor or epoch
		return
	}
	if req.c.epoch != s.epoch { // the record is newer than this node's copy: catch up first
		req.reply <- batch{err: errCatchUp}
		select {
		case s.recheck <- struct{}{}:
		default: // a recheck is already asked for
		}
		return
	}
	if old := s.parked[req.id]; old != nil {
		old.reply <- batch{}
		delete(s.parked, req.id)
	}
	if req.after == 0 || req.from() <= s.last() {
		req.reply <- s.take(req)
		return
	}
	s.parked[req.id] = req
}

// take answers req: the greeting for a first poll, then the entries it asks for,
// whole ones up to cfg.maxBatch bytes but at least one. A cursor behind the cache is
// behind Redis too (the cache never starts after Redis's first entry), so it is 410.
func (s *tailState) take(req *pollRequest) batch {
	from := req.from()
	if from < s.first {
		return batch{err: behindError{s.cfg.backlog}}
	}
	var msgs [][]byte
	size := 0
	if req.after == 0 {
		msgs = append(msgs, req.greeting)
		size = len(req.greeting) + wireOverhead
	}
	for g := from; g <= s.last(); g++ {
		body := s.cache[g-s.first].body
		if len(msgs) > 0 && size+len(body)+wireOverhead > s.cfg.maxBatch {
			break
		}
		msgs = append(msgs, body)
		size += len(body) + wireOverhead
	}
	return batch{first: req.after + 1, msgs: msgs}
}

// grow appends what the reader read and wakes the polls it answers. An entry that
// does not follow the cache means the reader fell behind the trimming: the cache
// starts again from it, and cursors before it get 410, as they would from Redis.
func (s *tailState) grow(entries []entry) {
	for _, e := range entries {
		if e.g != s.last()+1 {
			s.first, s.cache = e.g, nil
		}
		s.cache = append(s.cache, e)
	}
	if extra := len(s.cache) - s.cfg.backlog; extra > 0 {
		s.first += uint64(extra)
		s.cache = s.cache[extra:]
	}
	s.wake()
}

// wake answers every parked poll that now has something to read.
func (s *tailState) wake() {
	for id, req := range s.parked {
		if req.from() <= s.last() {
			req.reply <- s.take(req)
			delete(s.parked, id)
		}
	}
}

// unpark forgets a poll that timed out or whose browser went away. If it is still
// parked it gets an empty batch; if the tail answered it already, that answer stands.
func (s *tailState) unpark(req *pollRequest) {
	if s.parked[req.id] != req {
		return
	}
	delete(s.parked, req.id)
	req.reply <- batch{}
}

// release answers every parked poll at shutdown with errStopped (503, Retry-After).
func (s *tailState) release() {
	for _, req := range s.parked {
		req.reply <- batch{err: errStopped}
	}
}
