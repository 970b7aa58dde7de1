"""Datasets into task tensors, once; per-batch preprocessing on the device.

The data step decodes the datasets an experiment uses into one file of uint8 tensors
(``tasks.pt``): for every task its train, validation and test split with the original
labels and the indices into the source dataset (for an image-folder dataset such as
CLEAR-10: into the bucket's sorted file list, :func:`clpipe.catalog.bucket_files`).
Every later job loads that file and moves it to the device once; cropping, resizing,
channel repeat and normalisation happen per batch on the device, with no per-sample PIL
work. One concern per module:

- :mod:`clpipe.data.readers`: the built-in datasets' file formats (idx, CIFAR batches,
  image files, an image-folder bucket);
- :mod:`clpipe.data.user_data`: a config's own dataset read and checked in the data step;
- :mod:`clpipe.data.tasks`: the tasks built from the datasets (:func:`build_tasks`);
- :mod:`clpipe.data.pipeline`: the tasks as later jobs load them (:class:`Task`,
  :class:`Split`, :func:`load_tasks`) and their per-batch preprocessing
  (:class:`InputPipeline`).

Import from the module (``from clpipe.data.pipeline import InputPipeline``): the
fingerprint of a job's code (clpipe.fingerprint) follows the modules its script imports,
so a job that imports one of these depends on that one (and what it imports) only.
"""
