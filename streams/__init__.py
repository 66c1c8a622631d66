"""Stream processors (faust-streaming): sensor windows and rules, camera health, alarm
life-cycle and the notifier. The broker and client versions are pinned for it already."""
