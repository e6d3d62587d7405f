"""Export a run's adapter (PEFT format + tokenizer + model card), optionally merged, optionally pushed.

write.export is the entry point; the modules each do one job:
    source   what the run holds: its config, the adapter to export (final or a checkpoint), its metrics
    adapter_check  is an adapter fit to ship: it loads, and its tensors are what peft makes for the base
    target   refuse an --output-dir that would overwrite or delete anything export did not create
    marker   the .gcpo-lite-export marker that tells a previous export from other folders
    staging  write into a hidden sibling folder, then swap it in (or restore the previous export)
    leftovers  staging folders of killed exports: removed when their process is gone, else reported
    card     the model card (README.md) text
    write    the files of one export, and export() that puts them together
    hub_push upload a finished export to the Hugging Face Hub
The merge into a full model is gcpo_lite/models/merge.py.
"""
