"""The media process: the media engine and the RTP bank run in a child process of the node (`[media] process`),
so that packet timing no longer shares an interpreter lock with the event loop's bursts.

`wire` frames pickled batches (and passes socket descriptors) over a Unix socketpair; `worker` is the child's
main (`python -m opencomms.mediahost.worker`); `remote` is the node's side: `MediaProcess`, a drop-in for
`media.clock.EngineThread` (commands out, events back), and `RemoteBank`, for `rtp.bank.RtpBank`.
"""
