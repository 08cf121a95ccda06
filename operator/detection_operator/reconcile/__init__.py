"""One evaluation of one object: the skeleton and the flow of each kind."""
