package reelq

// SetBetweenReads makes c run f between Get's read of a job's state and
// its read of the queue (tests of what happens to the job meanwhile).
func SetBetweenReads(c *Client, f func(id string)) { c.betweenReads = f }
