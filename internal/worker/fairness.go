package worker

// fairPool is the part of *slots.Pool that shares slots among fairness
// keys cluster-wide.
type fairPool interface {
	SetKeys(keys []string)
	KeyWeights() map[string]float64
}

func (e *engine) keyStarted(j *job) {
	r := j.level()
	if e.runKeys[r] == nil {
		e.runKeys[r] = map[string]int{}
	}
	if e.runKeys[r][j.fkh]++; e.runKeys[r][j.fkh] == 1 {
		e.runKeysVer++
	}
}

func (e *engine) keyEnded(j *job) {
	r := j.level()
	if e.runKeys[r][j.fkh]--; e.runKeys[r][j.fkh] <= 0 {
		delete(e.runKeys[r], j.fkh)
		e.runKeysVer++
	}
}

// publishKeys advertises the fairness keys of the jobs at this engine's
// top rank (waiting, or else running) when they changed, and takes the
// cluster-wide plan for the waiting queue.
func (e *engine) publishKeys() {
	fp, ok := e.pool.(fairPool)
	if !ok {
		return
	}
	rank := e.waitq.top()
	if rank == 0 {
		for r := levels - 1; r >= 1; r-- {
			if len(e.runKeys[r]) > 0 {
				rank = r
				break
			}
		}
	}
	at := [2]uint64{e.waitq.version(), e.runKeysVer}
	if at != e.keysAt || rank != e.keysRank {
		e.keysAt, e.keysRank = at, rank
		keys := e.keyBuf[:0]
		if rank > 0 {
			keys = e.waitq.keys(rank, keys)
			for k := range e.runKeys[rank] {
				keys = append(keys, k)
			}
		}
		e.keyBuf = keys
		fp.SetKeys(keys)
	}
	e.waitq.setWeights(fp.KeyWeights())
}
