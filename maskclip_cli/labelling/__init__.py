"""The `label` job: a folder of images -> a label folder, resumable."""
