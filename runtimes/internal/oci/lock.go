package oci

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// fileLock is a held flock(2) lock. flock locks belong to an open file
// description, so two locks taken through separate opens conflict even inside
// one process: two Stores on one directory behave like two processes.
type fileLock struct {
	f *os.File
}

// lockFile takes a shared (unix.LOCK_SH) or exclusive (unix.LOCK_EX) lock on
// the file at path, creating it if needed. It waits until the lock is granted
// or ctx is done.
func lockFile(ctx context.Context, path string, how int) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	fd := int(f.Fd())
	err = unix.Flock(fd, how|unix.LOCK_NB)
	if err == nil {
		return &fileLock{f: f}, nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Held by someone else: wait in a goroutine so that ctx can end the wait.
	// If ctx wins, the goroutine releases the lock it eventually gets.
	granted := make(chan error, 1)
	go func() { granted <- flockWait(fd, how) }()
	select {
	case err := <-granted:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &fileLock{f: f}, nil
	case <-ctx.Done():
		go func() {
			if err := <-granted; err == nil {
				_ = unix.Flock(fd, unix.LOCK_UN)
			}
			f.Close()
		}()
		return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
	}
}

func flockWait(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// unlock releases the lock. It is safe to call on a nil lock.
func (l *fileLock) unlock() {
	if l == nil {
		return
	}
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}
