module github.com/reelq/reelq

go 1.26.0

require (
	github.com/caarlos0/env/v11 v11.4.2
	golang.org/x/time v0.16.0
)
